"""Lifecycle events as Celery custom events, so `celery events`, Flower's event stream or any
`app.events.Receiver` sees workflows start, pause and end next to Celery's own task events.

Event types: `workflow-<status>` for the run (workflow-started, workflow-paused, workflow-succeeded,
...) and `workflow-task-<status>` for its tasks (workflow-task-started, workflow-task-failed, ...).
Fields: run_id, workflow, task, seq, attempt, message. Sent after the step committed; best effort
(the durable record is the run_events table). Their `timestamp` is the step's time (the `at` of
its run_events rows), not the moment of sending: a step publishes its events after its calls, so
the next step, in another process, may send its own first; ordered by timestamp (as Celery's
event consumers order task events from many workers), a run's events read in the order its
steps took them.

Like Celery's own task events they are opt-in, since each costs a broker publish per step:
ORCHESTRATOR_SEND_EVENTS=1 in every process that runs steps (workers, and the API or CLI
processes that start and operate runs); `orchestrator worker -E` sets it for that worker.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import datetime
from typing import Iterable

from celery import Celery

from .lifecycle import LifecycleEvent

log = logging.getLogger("orchestrator.events")


def event_type(kind: str) -> str:
    scope, status = kind.split(".", 1)
    return f"workflow-{status}" if scope == "workflow" else f"workflow-task-{status}"


class EventPublisher:
    def __init__(self, app: Celery, enabled: bool = True):
        self.app = app
        self.enabled = enabled
        self.hostname = f"orchestrator@{socket.gethostname()}"
        self._dispatcher = None
        self._pid = 0

    def publish(self, run_id: str, workflow: str, events: Iterable[LifecycleEvent], at: datetime | None = None) -> None:
        """Send one step's events, in their order; `at`: the step's time, their timestamp."""
        events = list(events)
        if not (self.enabled and events):
            return
        stamp = {} if at is None else {"timestamp": at.timestamp()}
        try:
            dispatcher = self._open()
            for event in events:
                dispatcher.send(event_type(event.kind), run_id=run_id, workflow=workflow, task=event.task,
                                seq=event.seq, attempt=event.attempt, message=event.message, **stamp)
        except Exception as exc:  # the run's own record is already committed
            log.warning("could not send the events of run %s: %s", run_id, exc)
            self.close()

    def _open(self):
        """One dispatcher and connection per process (a forked child opens its own): a pooled
        one per step cost more than the publishes themselves."""
        if self._dispatcher is None or self._pid != os.getpid():
            self._dispatcher = self.app.events.Dispatcher(self.app.connection_for_write(), hostname=self.hostname,
                                                          enabled=True)
            self._pid = os.getpid()
        return self._dispatcher

    def close(self) -> None:
        dispatcher, self._dispatcher = self._dispatcher, None
        if dispatcher is not None and self._pid == os.getpid():
            try:
                dispatcher.close()
                dispatcher.connection.release()
            except Exception:  # already broken: nothing more to release
                pass
