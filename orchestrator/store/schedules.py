"""Schedule rows: adding, listing, pausing, and claiming due times exactly once.

A due time is claimed by one conditional UPDATE (`... WHERE next_due_at = <the time read>`):
of two beat processes that read the same row, one moves `next_due_at` on and the other updates
nothing. The claim writes the fire row (which names the run) in the same transaction, so a beat
that dies after committing leaves a fire whose run is missing, and the next tick sends it again.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..schedules import Decision, ScheduleSpec, as_utc, next_due, run_id
from .models import Schedule, ScheduleFire, WorkflowRun
from .runs import iso

SCHEDULES = Schedule.__table__
FIRES = ScheduleFire.__table__
RUNS = WorkflowRun.__table__


class ScheduleExists(ValueError):
    pass


class ScheduleNotFound(LookupError):
    pass


def spec_of(row: Any) -> ScheduleSpec:
    return ScheduleSpec(row.name, row.workflow, dict(row.params or {}), row.every, row.cron, row.timezone, row.missed)


def add(conn: Connection, spec: ScheduleSpec, now: datetime) -> dict[str, Any]:
    """Store a checked spec (schedules.check); its first due time is the first after `now`."""
    values = dict(name=spec.name, workflow=spec.workflow, params=spec.params, every=spec.every, cron=spec.cron,
                  timezone=spec.timezone, missed=spec.missed, paused=False, anchor_at=now,
                  next_due_at=next_due(spec, now, now), created_at=now, updated_at=now)
    dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    added = conn.execute(dialect_insert(SCHEDULES).values(**values).on_conflict_do_nothing(index_elements=["name"])
                         .returning(SCHEDULES.c.id)).first()
    if added is None:
        raise ScheduleExists(f"a schedule named {spec.name!r} exists already (remove it first)")
    return get(conn, spec.name)


def remove(conn: Connection, name: str) -> None:
    """Delete the schedule. The runs it started keep their link (name and due time)."""
    if conn.execute(delete(SCHEDULES).where(SCHEDULES.c.name == name)).rowcount == 0:
        raise ScheduleNotFound(f"no schedule named {name!r}")


def set_paused(conn: Connection, name: str, paused: bool, now: datetime) -> dict[str, Any]:
    """Pause, or resume: a resumed schedule counts its due times from now on, so the time it was
    paused fires nothing (no catch-up run)."""
    row = conn.execute(select(SCHEDULES).where(SCHEDULES.c.name == name)).first()
    if row is None:
        raise ScheduleNotFound(f"no schedule named {name!r}")
    if row.paused != paused:
        values: dict[str, Any] = dict(paused=paused, updated_at=now)
        if not paused:
            values.update(anchor_at=now, next_due_at=next_due(spec_of(row), now, now))
        conn.execute(update(SCHEDULES).where(SCHEDULES.c.id == row.id).values(**values))
    return get(conn, name)


def get(conn: Connection, name: str) -> dict[str, Any]:
    found = listing(conn, name)
    if not found:
        raise ScheduleNotFound(f"no schedule named {name!r}")
    return found[0]


def listing(conn: Connection, name: str | None = None) -> list[dict[str, Any]]:
    """Schedules by name, each with its last fire ({due_at, run_id}) or None."""
    last = (select(FIRES.c.schedule_id, func.max(FIRES.c.due_at).label("due_at"))
            .group_by(FIRES.c.schedule_id).subquery())
    stmt = (select(SCHEDULES, last.c.due_at.label("last_due_at"), FIRES.c.run_id.label("last_run_id"))
            .outerjoin(last, last.c.schedule_id == SCHEDULES.c.id)
            .outerjoin(FIRES, and_(FIRES.c.schedule_id == SCHEDULES.c.id, FIRES.c.due_at == last.c.due_at))
            .order_by(SCHEDULES.c.name))
    if name is not None:
        stmt = stmt.where(SCHEDULES.c.name == name)
    return [{"name": r.name, "workflow": r.workflow, "params": r.params or {}, "every": r.every, "cron": r.cron,
             "timezone": r.timezone, "missed": r.missed, "paused": r.paused,
             "next_due_at": None if r.paused else iso(r.next_due_at), "created_at": iso(r.created_at),
             "last_fire": None if r.last_run_id is None else {"due_at": iso(r.last_due_at), "run_id": r.last_run_id}}
            for r in conn.execute(stmt)]


def due(conn: Connection, now: datetime, limit: int = 100) -> list[Any]:
    """Active schedules whose next due time has come, earliest first."""
    return conn.execute(select(SCHEDULES).where(SCHEDULES.c.next_due_at <= now, SCHEDULES.c.paused.is_(False))
                        .order_by(SCHEDULES.c.next_due_at).limit(limit)).all()


def next_wake(conn: Connection) -> datetime | None:
    """The earliest due time of an active schedule, or None."""
    return conn.execute(select(func.min(SCHEDULES.c.next_due_at)).where(SCHEDULES.c.paused.is_(False))).scalar()


def claim(conn: Connection, row: Any, decision: Decision, now: datetime) -> tuple[bool, str | None]:
    """Move the schedule on to `decision.next` if nobody else did since `row` was read (False:
    another beat did, or it was paused), and record the fire. Returns (claimed, the run id to
    start or None when the decision fires nothing)."""
    moved = conn.execute(update(SCHEDULES).where(SCHEDULES.c.id == row.id, SCHEDULES.c.next_due_at == row.next_due_at,
                                                 SCHEDULES.c.paused.is_(False))
                         .values(next_due_at=decision.next, updated_at=now)).rowcount
    if moved != 1:
        return False, None
    if decision.fire is None:
        return True, None
    fired = run_id(row.id, decision.fire)
    conn.execute(insert(FIRES).values(run_id=fired, schedule_id=row.id, schedule=row.name, due_at=decision.fire,
                                      missed=decision.missed, sends=1, fired_at=now))
    return True, fired


def unstarted(conn: Connection, now: datetime, wait: float, limit: int = 100) -> list[Any]:
    """Fires whose run does not exist `wait` seconds after they were sent (twice that after a
    second send, and so on: while no worker takes starts, resends do not pile up), joined with
    their schedule (workflow None when it was removed since)."""
    candidates = (select(FIRES.c.run_id, FIRES.c.fired_at, FIRES.c.sends, FIRES.c.schedule, SCHEDULES.c.workflow,
                         SCHEDULES.c.params)
                  .outerjoin(RUNS, RUNS.c.id == FIRES.c.run_id)
                  .outerjoin(SCHEDULES, SCHEDULES.c.id == FIRES.c.schedule_id)
                  .where(RUNS.c.id.is_(None), FIRES.c.fired_at <= now - timedelta(seconds=wait))
                  .order_by(FIRES.c.fired_at).limit(limit))
    return [row for row in conn.execute(candidates)
            if as_utc(row.fired_at) + timedelta(seconds=wait * 2 ** min(row.sends - 1, 16)) <= now]


def touch(conn: Connection, fire: Any, now: datetime) -> bool:
    """Mark a fire sent again (True), unless another beat did since it was read."""
    return conn.execute(update(FIRES).where(FIRES.c.run_id == fire.run_id, FIRES.c.fired_at == fire.fired_at)
                        .values(fired_at=now, sends=fire.sends + 1)).rowcount == 1


def fires(conn: Connection, schedule: str | None = None) -> list[dict[str, Any]]:
    """Fire rows (oldest due time first), for tests and operators."""
    stmt = select(FIRES).order_by(FIRES.c.due_at)
    if schedule is not None:
        stmt = stmt.where(FIRES.c.schedule == schedule)
    return [{"run_id": r.run_id, "schedule": r.schedule, "due_at": iso(r.due_at), "missed": r.missed,
             "sends": r.sends, "fired_at": iso(r.fired_at)} for r in conn.execute(stmt)]
