"""The Python API for schedules (the CLI and HTTP call these):

    from orchestrator import add_schedule
    add_schedule("nightly", "backup", every=None, cron="0 3 * * *", timezone="Europe/Paris",
                 params={"target": "s3"})
    list_schedules(); pause_schedule("nightly"); resume_schedule("nightly"); remove_schedule("nightly")

Beat fires them (beat.py). A schedule's workflow and parameters are checked when it is added,
so a typo is an error now, not a failed run at 3 am.
"""

from __future__ import annotations

from typing import Any

from .api import resolve
from .formats import resolve_params
from .runtime import supervisor
from .schedules import ScheduleInvalid, ScheduleSpec, check
from .store import schedules as rows
from .store.runs import utcnow
from .store.schedules import ScheduleExists, ScheduleNotFound

__all__ = ["add_schedule", "list_schedules", "get_schedule", "remove_schedule", "pause_schedule",
           "resume_schedule", "schedule_fires", "ScheduleInvalid", "ScheduleExists", "ScheduleNotFound"]


def add_schedule(name: str, workflow: str, *, every: float | None = None, cron: str | None = None,
                 params: dict[str, Any] | None = None, timezone: str = "UTC", missed: str = "coalesce",
                 confined: bool = False) -> dict[str, Any]:
    """Store a schedule and return it as `list_schedules` shows it. Raises ScheduleInvalid (naming
    the field), WorkflowNotFound, WorkflowInvalid, ParametersInvalid or ScheduleExists. `confined`
    (the HTTP API): the workflow is found as `resolve(..., confined=True)` finds it."""
    spec = check(ScheduleSpec(name, workflow, params or {}, every, cron, timezone or "UTC", missed or "coalesce"))
    resolve_params(resolve(spec.workflow, confined=confined), spec.params)  # the workflow exists and takes these parameters
    sup = supervisor()
    with sup.db.transaction() as conn:
        return rows.add(conn, spec, utcnow())


def list_schedules() -> list[dict[str, Any]]:
    """Every schedule: name, workflow, params, every, cron, timezone, missed, paused, next_due_at
    (None while paused), created_at and last_fire ({due_at, run_id} or None)."""
    sup = supervisor()
    with sup.db.reading() as conn:
        return rows.listing(conn)


def get_schedule(name: str) -> dict[str, Any]:
    sup = supervisor()
    with sup.db.reading() as conn:
        return rows.get(conn, name)


def remove_schedule(name: str) -> None:
    """Delete a schedule (ScheduleNotFound when there is none); its runs keep their link."""
    sup = supervisor()
    with sup.db.transaction() as conn:
        rows.remove(conn, name)


def pause_schedule(name: str) -> dict[str, Any]:
    """Stop firing until resumed."""
    return _set_paused(name, True)


def resume_schedule(name: str) -> dict[str, Any]:
    """Fire again from the next due time after now (the paused time is not caught up)."""
    return _set_paused(name, False)


def schedule_fires(name: str | None = None) -> list[dict[str, Any]]:
    """The due times fired (run_id, schedule, due_at, missed, fired_at), oldest first."""
    sup = supervisor()
    with sup.db.reading() as conn:
        return rows.fires(conn, name)


def _set_paused(name: str, paused: bool) -> dict[str, Any]:
    sup = supervisor()
    with sup.db.transaction() as conn:
        return rows.set_paused(conn, name, paused, utcnow())
