"""Rows that keep runs alive: worker heartbeats, deployment-wide housekeeping slots, fan-in call
outcomes, and the indexed look-ups the sweeps make (due timers, stale outbox rows, active runs).

Every query here is bounded by what is due or alive, never by how many runs the database holds:
due timers and old outcome rows come from range scans of their `due_at` / `created_at` indexes,
workers from their heartbeat index.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Iterable

from sqlalchemy import Connection, bindparam, delete, select, text, update

from .models import CallOutcome, Housekeeping, Timer, Worker, WorkflowRun
from .runs import utcnow

WORKERS = Worker.__table__
SLOTS = Housekeeping.__table__
OUTCOMES = CallOutcome.__table__
TIMERS = Timer.__table__
RUNS = WorkflowRun.__table__

ACTIVE = ("running", "pausing", "paused", "canceling")  # run statuses that may have calls out
NO_ITEM = -1  # call_outcomes.item of a call that is not a with_items item


def _item(item: int | None) -> int:
    return NO_ITEM if item is None else item


# Heartbeats ----------------------------------------------------------------------------------

def beat(conn: Connection, worker_id: str, hostname: str, pid: int, started_at: datetime,
         calls: list[list[Any]]) -> None:
    """Record that this worker lives and which calls it holds ([call id, pool process id,
    running, retries])."""
    values = dict(id=worker_id, hostname=hostname, pid=pid, started_at=started_at, heartbeat_at=utcnow(),
                  calls=calls)
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert
        stmt = pg_insert(WORKERS).values(values)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert
        stmt = sqlite_insert(WORKERS).values(values)
    conn.execute(stmt.on_conflict_do_update(index_elements=[WORKERS.c.id],
                                            set_=dict(heartbeat_at=values["heartbeat_at"], calls=calls)))


def forget_worker(conn: Connection, worker_id: str) -> None:
    conn.execute(delete(WORKERS).where(WORKERS.c.id == worker_id))


def live_workers(conn: Connection, timeout: float) -> list[Any]:
    """Workers whose last heartbeat is younger than `timeout` seconds: id, heartbeat_at, calls."""
    since = utcnow() - timedelta(seconds=timeout)
    return conn.execute(select(WORKERS.c.id, WORKERS.c.heartbeat_at, WORKERS.c.calls)
                        .where(WORKERS.c.heartbeat_at > since)).all()


def drop_dead_workers(conn: Connection, older_than: float) -> int:
    since = utcnow() - timedelta(seconds=older_than)
    return conn.execute(delete(WORKERS).where(WORKERS.c.heartbeat_at <= since)).rowcount


# Housekeeping slots ---------------------------------------------------------------------------

_CLAIM_POSTGRES = text(
    "UPDATE housekeeping SET next_at = :next_at, holder = :holder WHERE duty = "
    "(SELECT duty FROM housekeeping WHERE duty = :duty AND next_at <= :now FOR UPDATE SKIP LOCKED) "
    "RETURNING duty")
_CLAIM_GENERIC = text(
    "UPDATE housekeeping SET next_at = :next_at, holder = :holder WHERE duty = :duty AND next_at <= :now "
    "RETURNING duty")


def claim(conn: Connection, duty: str, holder: str, interval: float) -> bool:
    """Take the duty's slot for the next `interval` seconds if it is due: exactly one worker of the
    deployment gets each slot (a locked row is skipped, not waited for)."""
    now = utcnow()
    params = dict(duty=duty, holder=holder, now=now, next_at=now + timedelta(seconds=interval))
    stmt = _CLAIM_POSTGRES if conn.dialect.name == "postgresql" else _CLAIM_GENERIC
    if conn.execute(stmt, params).first() is not None:
        return True
    if conn.execute(select(SLOTS.c.duty).where(SLOTS.c.duty == duty)).first() is None:
        _create_slot(conn, duty)
        return conn.execute(stmt, params).first() is not None
    return False


def _create_slot(conn: Connection, duty: str) -> None:
    row = dict(duty=duty, next_at=utcnow() - timedelta(seconds=1), holder=None, value=None)
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert
        conn.execute(pg_insert(SLOTS).values(row).on_conflict_do_nothing())
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert
        conn.execute(sqlite_insert(SLOTS).values(row).on_conflict_do_nothing())


def remembered(conn: Connection, duty: str) -> Any:
    """What the duty keeps between sweeps (None when nothing)."""
    return conn.execute(select(SLOTS.c.value).where(SLOTS.c.duty == duty)).scalar_one_or_none()


def remember(conn: Connection, duty: str, value: Any) -> None:
    if conn.execute(update(SLOTS).where(SLOTS.c.duty == duty).values(value=value)).rowcount == 0:
        _create_slot(conn, duty)
        conn.execute(update(SLOTS).where(SLOTS.c.duty == duty).values(value=value))


# Fan-in call outcomes -------------------------------------------------------------------------

_ADD_OUTCOME = text(
    "INSERT INTO call_outcomes (run_id, seq, attempt, item, envelope, created_at) "
    "VALUES (:run_id, :seq, :attempt, :item, :envelope, :now) ON CONFLICT DO NOTHING"
).bindparams(bindparam("envelope", type_=CallOutcome.__table__.c.envelope.type))


def add_outcome(conn: Connection, envelope: dict[str, Any]) -> None:
    """Keep a fan-in call's envelope; a second copy of the same call's outcome is ignored."""
    conn.execute(_ADD_OUTCOME, dict(run_id=envelope["run"], seq=envelope["seq"], attempt=envelope["attempt"],
                                    item=_item(envelope.get("item")), envelope=envelope, now=utcnow()))


def outcome(conn: Connection, run_id: str, seq: int, attempt: int, item: int | None) -> dict[str, Any] | None:
    return conn.execute(select(OUTCOMES.c.envelope).where(
        OUTCOMES.c.run_id == run_id, OUTCOMES.c.seq == seq, OUTCOMES.c.attempt == attempt,
        OUTCOMES.c.item == _item(item))).scalar_one_or_none()


def outcomes_of(conn: Connection, run_ids: Iterable[str]) -> dict[tuple[str, int, int, int | None], dict[str, Any]]:
    ids = list(run_ids)
    if not ids:
        return {}
    rows = conn.execute(select(OUTCOMES.c.run_id, OUTCOMES.c.seq, OUTCOMES.c.attempt, OUTCOMES.c.item,
                               OUTCOMES.c.envelope).where(OUTCOMES.c.run_id.in_(ids)))
    return {(r.run_id, r.seq, r.attempt, None if r.item == NO_ITEM else r.item): r.envelope for r in rows}


def old_outcome_runs(conn: Connection, older_than: float, limit: int = 200) -> list[str]:
    """Runs with a fan-in outcome older than `older_than` s that no chord has applied yet."""
    since = utcnow() - timedelta(seconds=older_than)
    rows = conn.execute(select(OUTCOMES.c.run_id).where(OUTCOMES.c.created_at <= since)
                        .order_by(OUTCOMES.c.created_at).limit(limit)).scalars()
    return list(dict.fromkeys(rows))


def run_outcomes(conn: Connection, run_id: str) -> list[dict[str, Any]]:
    return list(conn.execute(select(OUTCOMES.c.envelope).where(OUTCOMES.c.run_id == run_id)
                             .order_by(OUTCOMES.c.seq, OUTCOMES.c.item)).scalars())


def drop_outcomes(conn: Connection, run_id: str, calls: Iterable[tuple[int, int, int | None]] | None = None) -> None:
    """Delete the run's outcome rows (those of `calls` only, when given)."""
    stmt = delete(OUTCOMES).where(OUTCOMES.c.run_id == run_id)
    if calls is not None:
        keys = [(seq, attempt, _item(item)) for seq, attempt, item in calls]
        if not keys:
            return
        from sqlalchemy import tuple_
        stmt = stmt.where(tuple_(OUTCOMES.c.seq, OUTCOMES.c.attempt, OUTCOMES.c.item).in_(keys))
    conn.execute(stmt)


# Sweeps' look-ups ----------------------------------------------------------------------------

def due_timer_runs(conn: Connection, limit: int) -> list[str]:
    """Runs with a timer due now, most overdue first: a range scan of the due_at index that stops
    after `limit` rows, however many timers are set."""
    rows = conn.execute(select(TIMERS.c.run_id).where(TIMERS.c.due_at <= utcnow())
                        .order_by(TIMERS.c.due_at).limit(limit)).scalars()
    return list(dict.fromkeys(rows))


def active_runs(conn: Connection, after: str = "", limit: int = 500) -> list[str]:
    """Ids of runs not finished, in id order from `after` (the broker-loss census pages through them)."""
    stmt = (select(RUNS.c.id).where(RUNS.c.status.in_(ACTIVE), RUNS.c.id > after)
            .order_by(RUNS.c.id).limit(limit))
    return list(conn.execute(stmt).scalars())
