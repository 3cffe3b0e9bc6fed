"""Deleting finished runs with every row they own, in bounded batches.

A run's task executions, variables, timers, items and events go with it by ON DELETE CASCADE;
its outbox rows and its schedule link are deleted here. A batch never takes a run in progress, a
run with a sub-workflow run in progress, or a sub-workflow run whose parent is in progress; on
PostgreSQL its rows are locked (SKIP LOCKED) and re-checked under the lock, so a run being
rerun at that moment is either pruned before or left alone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, exists, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from .models import CallOutcome, Housekeeping, Outbox, ScheduleFire, WorkflowRun

RUNS = WorkflowRun.__table__
OUTBOX = Outbox.__table__
FIRES = ScheduleFire.__table__
OUTCOMES = CallOutcome.__table__
SLOTS = Housekeeping.__table__  # the deployment's housekeeping duties (store/liveness.py): the daily prune is one
TERMINAL = ("succeeded", "failed", "canceled")


def prune_batch(conn: Connection, cut: datetime, statuses: tuple[str, ...], limit: int) -> int:
    """Delete up to `limit` finished runs (status in `statuses`) that finished before `cut`;
    returns how many."""
    child = RUNS.alias("child")
    parent = RUNS.alias("parent")
    finished = RUNS.c.finished_at  # set by every step that ends a run (indexed, migration 0006)
    stmt = (select(RUNS.c.id)
            .where(RUNS.c.status.in_(statuses), finished < cut,
                   ~exists().where(child.c.parent_run_id == RUNS.c.id, child.c.status.not_in(TERMINAL)),
                   ~exists().where(parent.c.id == RUNS.c.parent_run_id, parent.c.status.not_in(TERMINAL)))
            .order_by(finished).limit(limit))
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(of=RUNS, skip_locked=True)
    ids = list(conn.execute(stmt).scalars())
    if not ids:
        return 0
    conn.execute(delete(OUTBOX).where(OUTBOX.c.run_id.in_(ids)))
    conn.execute(delete(OUTCOMES).where(OUTCOMES.c.run_id.in_(ids)))  # no foreign key (store/models.py)
    conn.execute(delete(FIRES).where(FIRES.c.run_id.in_(ids)))
    conn.execute(delete(RUNS).where(RUNS.c.id.in_(ids)))
    return len(ids)


def prune_orphan_fires(conn: Connection, cut: datetime) -> int:
    """Fire rows older than `cut` whose run never came to exist (their schedule was removed
    before a lost start message could be sent again)."""
    orphan = ~exists().where(RUNS.c.id == FIRES.c.run_id)
    return conn.execute(delete(FIRES).where(FIRES.c.fired_at < cut, orphan)).rowcount or 0


def job_due_at(conn: Connection, name: str, now: datetime) -> datetime:
    """The job's next due time (its row in the housekeeping table), created due now on first use."""
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(insert(SLOTS).values(duty=name, next_at=now).on_conflict_do_nothing(index_elements=["duty"]))
    return conn.execute(select(SLOTS.c.next_at).where(SLOTS.c.duty == name)).scalar_one()


def claim_job(conn: Connection, name: str, seen: datetime, until: datetime, holder: str | None = None) -> bool:
    """Move the job's due time from `seen` to `until`; False when another process did first."""
    return conn.execute(update(SLOTS).where(SLOTS.c.duty == name, SLOTS.c.next_at == seen)
                        .values(next_at=until, holder=holder)).rowcount == 1


def finish_job(conn: Connection, name: str, due: datetime, result: dict[str, Any]) -> None:
    conn.execute(update(SLOTS).where(SLOTS.c.duty == name).values(next_at=due, value=result))
