"""Celery beat with the orchestrator's schedules.

    orchestrator beat                                   # the standalone app
    celery -A proj beat -S orchestrator.beat:Scheduler  # a team's own app

`Scheduler` is Celery's default PersistentScheduler (the app's own `beat_schedule` entries work
as before) plus the schedules stored in the database, which it reads on every tick (at least once
a second): a schedule added, paused or removed anywhere is seen at once, and nothing about them
lives in beat's memory or its shelve file. Each due time is claimed in the database before its
start message goes out (store/schedules.py), so two beat processes started by mistake fire it
once, and a restarted beat picks up where the database says.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Callable

from celery.beat import PersistentScheduler

from .schedules import as_utc, decide
from .store import Database
from .store import schedules as rows
from .store.runs import utcnow

log = logging.getLogger("orchestrator.beat")

POLL = 1.0           # seconds between two looks at the schedules table, at most
RESEND_AFTER = 300.0  # a fire whose run does not exist this long after its message is sent again (then 2x, 4x...)

Send = Callable[[str, str, dict[str, Any]], None]


class ScheduleRunner:
    """One deployment's schedules, ticked by whoever holds it (beat; a test with its own clock)."""

    def __init__(self, db: Database, send: Send, clock: Callable[[], datetime] = utcnow,
                 poll: float = POLL, resend_after: float = RESEND_AFTER):
        self.db = db
        self.send = send
        self.clock = clock
        self.poll = poll
        self.resend_after = resend_after

    def tick(self) -> float:
        """Fire what is due, send again what was lost; return the seconds until the next look."""
        now = self.clock()
        with self.db.reading() as conn:
            due = rows.due(conn, now)
        for row in due:
            self._fire(row, now)
        self._resend_lost(now)
        with self.db.reading() as conn:
            wake = rows.next_wake(conn)
        if wake is None:
            return self.poll
        seconds = (as_utc(wake) - self.clock()).total_seconds()
        return max(0.0, min(self.poll, seconds))

    def _fire(self, row: Any, now: datetime) -> None:
        decision = decide(rows.spec_of(row), row.anchor_at, row.next_due_at, now)
        if decision is None:
            return
        with self.db.transaction() as conn:
            claimed, run_id = rows.claim(conn, row, decision, now)
        if not claimed:
            return  # another beat moved it on first (or it was paused meanwhile)
        if run_id is None:
            log.warning("schedule %s: %d due times missed while beat was down; skipped (missed=skip)",
                        row.name, decision.missed)
            return
        extra = f" ({decision.missed} missed due times coalesced)" if decision.missed else ""
        log.info("schedule %s: due %s starts run %s%s", row.name, decision.fire.isoformat(), run_id, extra)
        self._send(run_id, row.workflow, row.params or {})

    def _resend_lost(self, now: datetime) -> None:
        with self.db.reading() as conn:
            lost = rows.unstarted(conn, now, self.resend_after)
        for fire in lost:
            if fire.workflow is None:
                continue  # its schedule was removed: nothing to start it with
            with self.db.transaction() as conn:
                if not rows.touch(conn, fire, now):
                    continue
            log.warning("schedule %s: run %s has not started since its start was sent (%d times); sending it "
                        "again", fire.schedule, fire.run_id, fire.sends)
            self._send(fire.run_id, fire.workflow, fire.params or {})

    def _send(self, run_id: str, workflow: str, params: dict[str, Any]) -> None:
        try:
            self.send(run_id, workflow, params)
        except Exception as exc:  # the broker is down: the fire row stays, and is sent again later
            log.warning("start of run %s not sent (%s); it is sent again within %.0f s", run_id, exc,
                        self.resend_after)


def celery_sender(app: Any) -> Send:
    """Starts go out as `orchestrator.start_workflow` with the run id as the task id (routed by
    the app's task_routes), so a redelivered or resent start creates nothing twice."""

    def send(run_id: str, workflow: str, params: dict[str, Any]) -> None:
        app.send_task("orchestrator.start_workflow", args=(workflow, params), task_id=run_id)

    return send


class Scheduler(PersistentScheduler):
    """Celery beat's scheduler class: the app's own entries, plus the database's schedules."""

    runner: ScheduleRunner | None = None

    def setup_schedule(self) -> None:
        super().setup_schedule()
        from .config import settings
        from .store import database

        db = database(settings().effective_database_url)
        db.ensure_schema(migrate=db.is_sqlite)
        self.runner = ScheduleRunner(db, celery_sender(self.app))

    def tick(self, *args: Any, **kwargs: Any) -> float:
        wait = super().tick(*args, **kwargs)
        if self.runner is None:
            return wait
        try:
            ours = self.runner.tick()
        except Exception as exc:  # the database is away: beat keeps going and looks again
            log.warning("schedules not checked: %s", exc)
            ours = POLL
        return min(wait, ours)
