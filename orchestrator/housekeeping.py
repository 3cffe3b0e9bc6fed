"""Housekeeping: the periodic work that keeps every run moving, done by the workers themselves.

One daemon thread in each worker's main process (started by a consumer bootstep, so it also runs
in the embedded worker) runs the duties. No Celery task is sent for any of it: nothing shows in
Flower, nothing queues behind actions.

- A *per-worker* duty runs in every worker: the heartbeat (the worker's row in `workers`, with the
  calls it holds) and, on a Redis broker, the refresh of its held messages' unacked scores.
- A *shared* duty runs once per interval for the whole deployment: each worker tries to claim the
  duty's row in `housekeeping` when it is due; one wins, the others skip it without waiting.
  Timers (every ORCHESTRATOR_TICK_INTERVAL), left-behind outbox rows and fan-in outcomes, dead
  workers' messages and the broker-loss census (every ORCHESTRATOR_SWEEP_INTERVAL) are shared.

`install(app)` wires it into a Celery app; `Housekeeper.add(Duty(...))` adds a duty (retention,
schedules). A duty that raises is logged and tried again at its next interval.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from celery import Celery, bootsteps

log = logging.getLogger("orchestrator.housekeeping")

ACTION = "orchestrator.action"


@dataclass
class Duty:
    name: str
    interval: float
    run: Callable[[], Any]
    shared: bool = True  # once per interval for the deployment (a claimed slot); else in every worker


class Housekeeper:
    """The duties of one worker process and the thread that runs them."""

    def __init__(self, supervisor_of: Callable[[], Any]):
        self._supervisor_of = supervisor_of
        self.duties: list[Duty] = []
        self.consumer: Any = None
        self.hostname = socket.gethostname()
        self.worker_id = f"{self.hostname}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        self.started_at = datetime.now(timezone.utc)
        self._due: dict[str, float] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._failing: dict[str, str] = {}
        self.quiet = False

    @property
    def supervisor(self) -> Any:
        return self._supervisor_of()

    def add(self, duty: Duty) -> None:
        self.duties = [d for d in self.duties if d.name != duty.name] + [duty]

    # Lifecycle ------------------------------------------------------------------------------

    def attach(self, consumer: Any) -> None:
        """The worker's consumer (re)connected: hold on to it, report what this worker holds at
        once (before consuming starts, so a message the broker gives back on reconnect meets an
        up-to-date list), and start the thread the first time."""
        self.consumer = consumer
        self.hostname = getattr(consumer, "hostname", None) or self.hostname
        self.run_duty("heartbeat")
        with self._lock:
            if not self._threads or not all(t.is_alive() for t in self._threads):
                self._stop.clear()
                # Two threads, so that a slow sweep never delays this worker's heartbeat.
                self._threads = [
                    threading.Thread(target=self._loop, args=(False,), name="orchestrator-heartbeat", daemon=True),
                    threading.Thread(target=self._loop, args=(True,), name="orchestrator-housekeeping", daemon=True)]
                for thread in self._threads:
                    thread.start()

    def stop(self) -> None:
        """The worker stops: end the thread and remove this worker's row, so its calls no longer
        count as held (a warm shutdown gives its unstarted messages back to the broker)."""
        self._stop.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(5)
        self._threads = []
        try:
            from .store import liveness

            with self.supervisor.db.transaction() as conn:
                liveness.forget_worker(conn, self.worker_id)
        except Exception as exc:
            log.warning("could not remove this worker's heartbeat row: %s", exc)

    def _loop(self, shared: bool) -> None:
        while not self._stop.wait(self._next_wait(shared)):
            for duty in [d for d in self.duties if d.shared == shared]:
                if self._stop.is_set():
                    return
                now = time.monotonic()
                if self._due.get(duty.name, 0.0) <= now:
                    self._due[duty.name] = now + duty.interval
                    self._attempt(duty)

    def _next_wait(self, shared: bool) -> float:
        due = [self._due.get(d.name, 0.0) for d in self.duties if d.shared == shared]
        if not due:
            return 0.5
        return max(0.05, min(0.5, min(due) - time.monotonic()))

    def run_duty(self, name: str) -> None:
        for duty in self.duties:
            if duty.name == name:
                self._attempt(duty)

    def _attempt(self, duty: Duty) -> None:
        try:
            if duty.shared and not self._claim(duty):
                return
            duty.run()
            self._failing.pop(duty.name, None)
        except Exception as exc:  # never let one failure stop housekeeping
            # Said once per duty and kind of failure (a database outage would repeat it every
            # second); in the embedded runtime the command in the foreground reports it anyway.
            said = self._failing.get(duty.name)
            self._failing[duty.name] = text = f"{type(exc).__name__}: {exc}".splitlines()[0]
            level = logging.DEBUG if self.quiet or said == text else logging.WARNING
            log.log(level, "housekeeping %s failed: %s", duty.name, text)

    def _claim(self, duty: Duty) -> bool:
        from .store import liveness

        with self.supervisor.db.transaction() as conn:
            return liveness.claim(conn, duty.name, self.worker_id, duty.interval)

    # What this worker holds -------------------------------------------------------------------

    def held_calls(self) -> list[list[Any]]:
        """[call id, pool process id or None, running, retries] for every action call this worker
        has received and not finished: running, reserved, or waiting for its countdown."""
        from celery.worker import state

        calls: dict[str, list[Any]] = {}
        for _ in range(3):  # the sets change under our feet; a retry is enough
            try:
                for request in tuple(state.scheduled_requests) + tuple(state.reserved_requests):
                    if request.name == ACTION:
                        calls[request.id] = [request.id, None, False, _retries(request)]
                for request in tuple(state.active_requests):
                    if request.name == ACTION:
                        calls[request.id] = [request.id, request.worker_pid, True, _retries(request)]
                break
            except RuntimeError:
                calls.clear()
        return list(calls.values())

    def held_tags(self) -> list[str]:
        """Delivery tags of the messages this worker's channel has not acknowledged (Redis only)."""
        consumer = self.consumer
        channel = getattr(getattr(consumer, "task_consumer", None), "channel", None)
        delivered = getattr(getattr(channel, "qos", None), "_delivered", None)
        if delivered is None:
            return []
        for _ in range(3):
            try:
                return [tag for tag in tuple(delivered)]
            except RuntimeError:
                continue
        return []


def _retries(request: Any) -> int:
    return int((getattr(request, "request_dict", None) or {}).get("retries") or 0)


class HousekeepingStep(bootsteps.StartStopStep):
    """A consumer bootstep: starts after the connection, before messages are processed."""

    requires = {"celery.worker.consumer.connection:Connection"}

    def start(self, c: Any) -> None:
        from . import runtime
        from .config import settings

        if not settings().embedded:  # a worker process lives long: see Supervisor.long_lived
            runtime.worker_process = True
            if runtime.supervisor.cache_info().currsize:
                runtime.supervisor().long_lived = True
        keeper = housekeeper()
        if keeper is not None:
            keeper.attach(c)  # never raises: a database not reachable yet is tried again each interval

    def shutdown(self, c: Any) -> None:
        keeper = housekeeper()
        if keeper is not None:
            keeper.stop()


_keeper: Housekeeper | None = None
_keeper_lock = threading.Lock()


def housekeeper() -> Housekeeper | None:
    """This process's housekeeper with the default duties (None when housekeeping is off:
    ORCHESTRATOR_TICK_INTERVAL=0)."""
    global _keeper
    from .config import settings

    if settings().tick_interval <= 0:
        return None
    with _keeper_lock:
        if _keeper is None:
            from .runtime import supervisor

            _keeper = Housekeeper(supervisor)
            _keeper.quiet = settings().embedded
            add_default_duties(_keeper)
        return _keeper


def add_default_duties(keeper: Housekeeper) -> None:
    """The duties every worker runs (benchmarks/flat.py times the shared database sweeps of one
    interval through these same duties)."""
    from . import recovery
    from .config import settings
    from .redis_broker import RedisBroker, is_redis
    from .runtime import celery_app

    conf = settings()
    redis = RedisBroker(celery_app()) if is_redis(conf.broker_url) else None
    # Held messages must be refreshed well within Redis's visibility timeout, however short it is set.
    beat = min(conf.heartbeat_interval, conf.visibility_timeout / 3) if redis is not None else conf.heartbeat_interval
    keeper.add(Duty("heartbeat", beat, lambda: _heartbeat(keeper, redis), shared=False))
    keeper.add(Duty("timers", conf.tick_interval, lambda: keeper.supervisor.fire_due_timers(budget=conf.tick_interval)))
    keeper.add(Duty("outbox", conf.sweep_interval, lambda: recovery.reconcile_outbox(keeper.supervisor)))
    keeper.add(Duty("outcomes", conf.sweep_interval, lambda: recovery.apply_left_outcomes(keeper.supervisor)))
    keeper.add(Duty("workers", 600, lambda: recovery.drop_dead_workers(keeper.supervisor)))
    if conf.retention is not None:  # the daily prune (pruning.py), in bounded passes: one a minute at most
        from .pruning import prune_if_due

        keeper.add(Duty("retention", 60, lambda: prune_if_due(db=keeper.supervisor.db, force_check=True)))
    if redis is not None:
        keeper.add(Duty("orphans", conf.sweep_interval,
                        lambda: recovery.restore_abandoned(keeper.supervisor, redis)))
    if redis is not None or is_redis(conf.effective_result_backend):
        keeper.add(Duty("census", conf.sweep_interval,
                        lambda: recovery.census(keeper.supervisor, redis, celery_app().backend)))


def _heartbeat(keeper: Housekeeper, redis: Any) -> None:
    """This worker lives: its row (with the calls it holds) and, on Redis, its held messages'
    unacked scores, so no sweep takes them for a dead worker's."""
    from .store import liveness

    if redis is not None and keeper.consumer is not None:
        try:
            redis.refresh(keeper.held_tags())
        except Exception as exc:
            log.warning("could not refresh this worker's held messages: %s", exc)
    with keeper.supervisor.db.transaction() as conn:
        liveness.beat(conn, keeper.worker_id, keeper.hostname, os.getpid(), keeper.started_at, keeper.held_calls())


def install(app: Celery) -> None:
    """Run housekeeping in the workers of `app` (idempotent)."""
    steps = app.steps["consumer"]
    if HousekeepingStep not in steps:
        steps.add(HousekeepingStep)
