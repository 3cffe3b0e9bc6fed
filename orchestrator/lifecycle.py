"""A run's lifecycle events: what happened, in words a person reads in `orchestrator logs`.

Derived from the commands of one committed step (pure: no I/O), then recorded in the step's
transaction (store/runs.py) and sent as Celery custom events after commit (events.py), so the
log in PostgreSQL and what an event monitor sees say the same thing.

Kinds: `workflow.started`, `workflow.<status>` (pausing, paused, running again, canceling, and
the end: succeeded, failed, canceled), `task.started`, `task.<status>` (succeeded, failed,
timed_out, canceled, skipped). with_items items are not events of their own: a task's start
names how many it has, and the task's end tells how they went.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable

from .engine.commands import ExecutionEnded, ExecutionStarted, RunFinished, StatusChanged


@dataclass(frozen=True)
class LifecycleEvent:
    kind: str
    task: str | None = None
    seq: int | None = None
    attempt: int | None = None
    message: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def lifecycle_events(commands: Iterable[Any], started: bool = False) -> list[LifecycleEvent]:
    """The events of one step, in the order the step's commands happened."""
    events = [LifecycleEvent("workflow.started")] if started else []
    for command in commands:
        if isinstance(command, ExecutionStarted):
            parts = []
            if command.attempt > 1:
                parts.append(f"attempt {command.attempt}")
            if command.items is not None:
                parts.append(f"{command.items} items")
            events.append(LifecycleEvent("task.started", command.task, command.seq, command.attempt,
                                         ", ".join(parts) or None))
        elif isinstance(command, ExecutionEnded):
            events.append(LifecycleEvent(f"task.{command.status}", command.task, command.seq, command.attempt,
                                         command.error))
        elif isinstance(command, StatusChanged):
            events.append(LifecycleEvent(f"workflow.{command.status}"))
        elif isinstance(command, RunFinished):
            events.append(LifecycleEvent(f"workflow.{command.status}", message=command.error))
    return events
