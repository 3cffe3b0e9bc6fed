"""Reading and writing runs: the only place that knows the schema's rows.

Every write happens on a connection inside the caller's transaction, so a supervisor step (lock,
load, decide, write) commits as one unit or not at all.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

from psycopg.types.json import Jsonb
from sqlalchemy import Connection, bindparam, delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..engine.commands import Command, ItemEnded, ItemsCreated
from ..core.items import ItemStore
from ..core.run import StateData
from ..secrets import Redactor
from ..lifecycle import LifecycleEvent, lifecycle_events
from . import statements as sql
from . import steps
from .database import first_row
from .steps import RUN_FINISHED  # noqa: F401 (the channel RunHandle.wait() listens on)
from .models import Outbox, RunEvent, ScheduleFire, TaskExecution, TaskItem, Timer, WorkflowDefinition, WorkflowRun, WorkflowVariable

RUNS = WorkflowRun.__table__
TASKS = TaskExecution.__table__
VARIABLES = WorkflowVariable.__table__
DEFINITIONS = WorkflowDefinition.__table__
TIMERS = Timer.__table__
ITEMS = TaskItem.__table__
OUTBOX = Outbox.__table__
EVENTS = RunEvent.__table__
FIRES = ScheduleFire.__table__  # a scheduled run's schedule and due time (store/schedules.py)

TERMINAL = ("succeeded", "failed", "canceled")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def iso(value: datetime | None) -> str | None:
    """In UTC whatever the database session's time zone (a step's `workflow_start` is the same
    text whether it came from the row or from the snapshot the start took)."""
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite hands back naive datetimes; they were stored as UTC
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat()


class RunStore:
    """Row-level operations; stateless but for the redactor and the ids of definitions already
    saved, so one instance serves every connection. Results, errors and outputs are stored with
    secrets masked (secrets.py)."""

    def __init__(self, redactor: Redactor | None = None):
        self.redact = redactor or Redactor({})
        self._definition_ids: dict[tuple[str, str], int] = {}

    # Definitions ----------------------------------------------------------------------------

    def save_definition(self, conn: Connection, name: str, text: str, source: str, registered: bool = False) -> int:
        """The id of this exact definition, stored once. Rows never change but for `registered`,
        so ids already seen are remembered: starting a run of a known definition reads nothing."""
        checksum = hashlib.sha256(text.encode()).hexdigest()
        known = self._definition_ids.get((name, checksum))
        if known is not None and not registered:
            return known
        found = conn.execute(select(DEFINITIONS.c.id, DEFINITIONS.c.registered)
                             .where(DEFINITIONS.c.name == name, DEFINITIONS.c.checksum == checksum)).first()
        if found is not None:
            if registered and not found.registered:
                conn.execute(update(DEFINITIONS).where(DEFINITIONS.c.id == found.id).values(registered=True))
            if len(self._definition_ids) > 1024:
                self._definition_ids.clear()
            # Only a row found is remembered: one inserted here vanishes if this transaction rolls back.
            self._definition_ids[(name, checksum)] = found.id
            return found.id
        # Two processes may store the same new definition at once (runs started side by side):
        # the loser of the insert finds the winner's row, which its next statement sees.
        dialect_insert = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
        inserted = conn.execute(dialect_insert(DEFINITIONS).values(
            name=name, checksum=checksum, source=source, text=text, registered=registered,
            created_at=utcnow()).on_conflict_do_nothing(index_elements=["name", "checksum"])
            .returning(DEFINITIONS.c.id)).scalar()
        if inserted is not None:
            return inserted
        winner = conn.execute(select(DEFINITIONS.c.id).where(
            DEFINITIONS.c.name == name, DEFINITIONS.c.checksum == checksum)).scalar_one()
        if registered:
            conn.execute(update(DEFINITIONS).where(DEFINITIONS.c.id == winner).values(registered=True))
        return winner

    def definition(self, conn: Connection, definition_id: int) -> Any:
        return conn.execute(select(DEFINITIONS).where(DEFINITIONS.c.id == definition_id)).first()

    def registered_definition(self, conn: Connection, name: str) -> Any:
        """The newest registered definition with this name, or None."""
        return conn.execute(select(DEFINITIONS).where(DEFINITIONS.c.name == name, DEFINITIONS.c.registered)
                            .order_by(DEFINITIONS.c.id.desc()).limit(1)).first()

    # Runs -----------------------------------------------------------------------------------

    def create_run(self, conn: Connection, run_id: str, workflow: str, definition_id: int | None,
                   params: dict[str, Any], status: str = "requested", error: str | None = None,
                   parent: dict[str, Any] | None = None) -> bool:
        """Insert a run; False when one with this id exists already (a redelivered start)."""
        now = utcnow()
        parent = parent or {}
        values = dict(id=run_id, workflow=workflow, definition_id=definition_id, status=status, params=params,
                      error=error, now=now, finished_at=now if status in TERMINAL else None,
                      parent_run_id=parent.get("run"), parent_seq=parent.get("seq"),
                      parent_attempt=parent.get("attempt"), parent_item=parent.get("item"))
        if conn.dialect.name == "postgresql":  # as a start's first statement, with its BEGIN
            return first_row(conn, sql.CREATE_RUN_POSTGRES, {**values, "params": Jsonb(params)}) is not None
        return conn.execute(sql.CREATE_RUN, values).first() is not None

    def run_exists(self, conn: Connection, run_id: str) -> bool:
        return conn.execute(select(RUNS.c.id).where(RUNS.c.id == run_id)).first() is not None

    def lock_run(self, conn: Connection, run_id: str, skip_locked: bool = False) -> Any:
        """The run's row, locked until the transaction ends (FOR UPDATE; SQLite is serialised).
        Connections carry a lock_timeout (database.py), so a stuck holder cannot wedge workers.
        With `skip_locked`, a row another transaction holds gives None at once (a sweep comes back
        to it later instead of queueing behind it). As a step's first statement (Database.step),
        its BEGIN is sent with it."""
        if conn.dialect.name == "postgresql":
            stmt = sql.LOCK_RUN_POSTGRES_SKIP if skip_locked else sql.LOCK_RUN_POSTGRES
            return first_row(conn, stmt, {"run_id": run_id})
        return conn.execute(select(RUNS).where(RUNS.c.id == run_id)).first()

    def read_run(self, conn: Connection, run_id: str) -> Any:
        """The run's row (with its variables on PostgreSQL), not locked: for checks that do not
        write (is a call still in flight?)."""
        if conn.dialect.name == "postgresql":
            return conn.execute(sql.READ_RUN_POSTGRES, {"run_id": run_id}).first()
        return conn.execute(select(RUNS).where(RUNS.c.id == run_id)).first()

    def ended_run(self, conn: Connection, run_id: str) -> Any:
        """status, output and error of a run (None when there is no such run)."""
        return conn.execute(select(RUNS.c.status, RUNS.c.workflow, RUNS.c.output, RUNS.c.error)
                            .where(RUNS.c.id == run_id)).first()

    # Outbox ---------------------------------------------------------------------------------

    def remove_outbox(self, conn: Connection, outbox_id: int) -> None:
        conn.execute(delete(OUTBOX).where(OUTBOX.c.id == outbox_id))

    def remove_outbox_many(self, conn: Connection, ids: list[int]) -> None:
        conn.execute(sql.REMOVE_OUTBOX, {"ids": ids})

    def stale_outbox(self, conn: Connection, older_than: float, limit: int = 100, after: int = 0) -> list[Any]:
        """Rows a process left behind (it died between commit and publish), oldest first from id
        `after`, locked for this transaction; other reconcilers skip them."""
        stmt = (select(OUTBOX).where(OUTBOX.c.created_at <= utcnow() - timedelta(seconds=older_than),
                                     OUTBOX.c.id > after)
                .order_by(OUTBOX.c.id).limit(limit))
        if conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        return conn.execute(stmt).all()

    def load_state(self, conn: Connection, run: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """The run's stored state data and its variables (already fetched by lock_run on
        PostgreSQL), as the conductor's format wrote them (formats.state_from_dict reads them)."""
        if "variables" in run._fields:
            variables = run.variables or {}
        else:
            variables = dict(conn.execute(select(VARIABLES.c.name, VARIABLES.c.value)
                                          .where(VARIABLES.c.run_id == run.id)).all())
        return run.state, variables

    def write_step(self, conn: Connection, run_id: str, state: StateData, commands: list[Command],
                   started_at: datetime | None = None, outbox: dict[str, Any] | None = None,
                   forget: list[int] | None = None, hosts: list[tuple[int, int, str]] | None = None,
                   expect: tuple[str, datetime] | None = None) -> tuple[steps.StepRows, steps.Written]:
        """Persist one conductor step (steps.py): execution and item rows, changed variables,
        timers, the run row, the step's lifecycle events, its outbox row (`outbox`), the deletion
        of outbox rows carried out earlier (`forget`) and the worker that ran each call reported
        in this step (`hosts`: seq, attempt, Celery hostname; a with_items task keeps the first
        one). With `expect` (the run row's version, xmin and updated_at, a snapshot was taken
        at) nothing is written unless the row is still that version; such a step has no item
        rows to write. Returns the folded rows (their lifecycle events are published after
        commit) and what the write left (the outbox row's id, the run row's new version)."""
        now = started_at or utcnow()
        rows = steps.fold(run_id, state.to_dict(), commands, now, started_at, self.redact)
        rows.events = lifecycle_events(commands, started=started_at is not None)
        rows.outbox, rows.forget, rows.expect = outbox, list(forget or ()), expect
        steps.add_hosts(rows, hosts or ())
        if expect is None:
            self._write_items(conn, run_id, commands)
        elif any(isinstance(c, (ItemsCreated, ItemEnded)) for c in commands):
            raise ValueError("a conditional write cannot carry item rows")
        return rows, steps.write(conn, rows, self.redact)

    def record_events(self, conn: Connection, run_id: str, events: list[LifecycleEvent]) -> None:
        """Events outside a conductor step (a start rejected before it ran)."""
        if events:
            now = utcnow()
            conn.execute(sql.ADD_EVENT, [dict(row, run_id=run_id, at=now) for row in steps.event_rows(events, self.redact)])

    def events(self, conn: Connection, run_id: str, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """The run's lifecycle events with id > `after`, oldest first."""
        rows = conn.execute(select(EVENTS).where(EVENTS.c.run_id == run_id, EVENTS.c.id > after)
                            .order_by(EVENTS.c.id).limit(limit))
        return [{"id": r.id, "at": iso(r.at), "kind": r.kind, "task": r.task, "seq": r.seq, "attempt": r.attempt,
                 "message": r.message} for r in rows]

    def _write_items(self, conn: Connection, run_id: str, commands: Iterable[Command]) -> None:
        """Item rows in bulk: one multi-row insert per created list, one executemany of updates."""
        ended = []
        for command in commands:
            if isinstance(command, ItemsCreated):
                conn.execute(insert(ITEMS), [dict(run_id=run_id, seq=command.seq, idx=i, value=v)
                                             for i, v in enumerate(command.values)])
            elif isinstance(command, ItemEnded):
                ended.append(dict(b_seq=command.seq, b_idx=command.item, status=command.status,
                                  result=command.result))  # read back by the conductor: kept whole
        if ended:
            conn.execute(update(ITEMS).where(ITEMS.c.run_id == run_id, ITEMS.c.seq == bindparam("b_seq"),
                                             ITEMS.c.idx == bindparam("b_idx")), ended)

    def take_due_timers(self, conn: Connection, run_id: str, keys: list[str] | None = None) -> list[str]:
        """Delete and return the run's timers that are due (all due ones when `keys` is None);
        called under the run's lock, so each timer fires once."""
        stmt = delete(TIMERS).where(TIMERS.c.run_id == run_id, TIMERS.c.due_at <= utcnow())
        if keys is not None:
            stmt = stmt.where(TIMERS.c.key.in_(keys))
        return sorted(conn.execute(stmt.returning(TIMERS.c.key)).scalars())

    # Reading --------------------------------------------------------------------------------

    def status(self, conn: Connection, run_id: str) -> str | None:
        return conn.execute(select(RUNS.c.status).where(RUNS.c.id == run_id)).scalar_one_or_none()

    def summary(self, conn: Connection, run_id: str) -> dict[str, Any] | None:
        """The run summary of interfaces.md: one entry per task execution, in start order."""
        run = conn.execute(select(RUNS, FIRES.c.schedule.label("schedule_name"), FIRES.c.due_at.label("schedule_due_at"))
                           .outerjoin(FIRES, FIRES.c.run_id == RUNS.c.id).where(RUNS.c.id == run_id)).first()
        if run is None:
            return None
        rows = conn.execute(select(TASKS).where(TASKS.c.run_id == run_id)
                            .order_by(TASKS.c.seq, TASKS.c.attempt)).all()
        tasks: list[dict[str, Any]] = []
        by_seq: dict[int, dict[str, Any]] = {}
        for row in rows:
            entry = by_seq.get(row.seq)
            if entry is None:
                entry = {"name": row.task, "status": row.status, "attempts": row.attempt, "items": row.items,
                         "result": row.result, "error": row.error, "started_at": iso(row.started_at),
                         "finished_at": iso(row.finished_at), "worker": row.worker}
                by_seq[row.seq] = entry
                tasks.append(entry)
            else:
                entry.update(status=row.status, attempts=row.attempt, result=row.result, error=row.error,
                             finished_at=iso(row.finished_at), worker=row.worker)
        summary = {"id": run.id, "workflow": run.workflow, "status": run.status, "output": run.output,
                   "error": run.error, "started_at": iso(run.started_at or run.created_at),
                   "finished_at": iso(run.finished_at), "tasks": tasks}
        if run.schedule_name is not None:  # started by a schedule's due time (store/schedules.py)
            summary["schedule"] = {"name": run.schedule_name, "due_at": iso(run.schedule_due_at)}
        return summary

    def list_runs(self, conn: Connection, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        stmt = select(RUNS.c.id, RUNS.c.workflow, RUNS.c.status, RUNS.c.created_at, RUNS.c.finished_at,
                      RUNS.c.error).order_by(RUNS.c.created_at.desc()).limit(limit)
        if status:
            stmt = stmt.where(RUNS.c.status == status)
        return [{"id": r.id, "workflow": r.workflow, "status": r.status, "created_at": iso(r.created_at),
                 "finished_at": iso(r.finished_at), "error": r.error} for r in conn.execute(stmt)]

    def active_children(self, conn: Connection, run_id: str) -> list[str]:
        return list(conn.execute(select(RUNS.c.id).where(RUNS.c.parent_run_id == run_id,
                                                         RUNS.c.status.not_in(TERMINAL))).scalars())


class StoredItems(ItemStore):
    """The conductor's view of with_items rows, read within the step's transaction."""

    def __init__(self, conn: Connection, run_id: str):
        self.conn = conn
        self.run_id = run_id

    def item(self, seq: int, index: int) -> Any:
        return self.conn.execute(select(ITEMS.c.value).where(ITEMS.c.run_id == self.run_id, ITEMS.c.seq == seq,
                                                             ITEMS.c.idx == index)).scalar_one()

    def results(self, seq: int) -> dict[int, Any]:
        rows = self.conn.execute(select(ITEMS.c.idx, ITEMS.c.result).where(
            ITEMS.c.run_id == self.run_id, ITEMS.c.seq == seq, ITEMS.c.status.is_not(None)))
        return {row.idx: row.result for row in rows}

    def execution(self, seq: int) -> dict[str, Any] | None:
        """For Orquesta's task(): the latest attempt of execution `seq` (one indexed read, only
        when an expression asks)."""
        row = self.conn.execute(select(TASKS.c.status, TASKS.c.result, TASKS.c.items, TASKS.c.started_at,
                                       TASKS.c.finished_at).where(TASKS.c.run_id == self.run_id, TASKS.c.seq == seq)
                                .order_by(TASKS.c.attempt.desc()).limit(1)).first()
        if row is None:
            return None
        found: dict[str, Any] = {"status": row.status, "result": row.result,
                                 "started_at": row.started_at.isoformat() if row.started_at else None,
                                 "finished_at": row.finished_at.isoformat() if row.finished_at else None}
        if row.items is not None:
            items = self.conn.execute(select(ITEMS.c.idx, ITEMS.c.status, ITEMS.c.result).where(
                ITEMS.c.run_id == self.run_id, ITEMS.c.seq == seq).order_by(ITEMS.c.idx))
            found["items"] = [{"status": item.status, "result": item.result} for item in items]
        return found
