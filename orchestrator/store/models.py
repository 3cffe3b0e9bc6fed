"""The schema. One row per run, per task execution attempt and per workflow variable, so a step
writes a constant number of rows however long the run's history is."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (JSON, BigInteger, DateTime, Float, ForeignKey, Index, Integer, MetaData,
                        PrimaryKeyConstraint, String, Text, TypeDecorator, UniqueConstraint)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class SQLiteJSON(TypeDecorator):
    """JSON in SQLite, stored as a BLOB of its text. A JSON column has NUMERIC affinity there, so
    a bare number written as text was converted: 2**63 read back as a float, 2.0 as the integer 2.
    A BLOB is kept as written. Rows written before (text, or a converted number) still read."""

    impl = JSON
    cache_ok = True

    def bind_processor(self, dialect: Any) -> Any:
        to_text = self.impl_instance.bind_processor(dialect)

        def process(value: Any) -> Any:
            value = to_text(value) if to_text else value
            return value.encode() if isinstance(value, str) else value

        return process

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        from_text = self.impl_instance.result_processor(dialect, coltype)

        def process(value: Any) -> Any:
            if isinstance(value, (int, float)):
                return value  # written before this type: already converted by SQLite
            if isinstance(value, bytes):
                value = value.decode()
            return from_text(value) if from_text else value

        return process


JSONType = JSON().with_variant(JSONB(), "postgresql").with_variant(SQLiteJSON(), "sqlite")
# Ids of rows written at step rate: bigint on PostgreSQL (int4 runs out in weeks at 10^3 rows/s);
# on SQLite only INTEGER PRIMARY KEY is the auto-incrementing rowid, which is 64-bit anyway.
BigId = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class WorkflowDefinition(Base):
    """A workflow file's text, stored once per distinct content; runs point at the version they ran."""

    __tablename__ = "workflow_definitions"
    __table_args__ = (UniqueConstraint("name", "checksum"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    checksum: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    registered: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class WorkflowRun(Base):
    """One run of a workflow. `state` is the conductor's compact state (without variables)."""

    __tablename__ = "workflow_runs"
    # created_at: the newest runs first (`list`, /api/runs, the web view's poll) without a sort
    # of every run; status + created_at: the same per status, and counting the active runs;
    # finished_at: what prune may delete.
    __table_args__ = (Index("ix_workflow_runs_status_created", "status", "created_at"),
                      Index("ix_workflow_runs_created_at", "created_at"),
                      Index("ix_workflow_runs_finished_at", "finished_at"))

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    workflow: Mapped[str] = mapped_column(String(200), index=True)
    definition_id: Mapped[int | None] = mapped_column(ForeignKey("workflow_definitions.id"), nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    params: Mapped[Any] = mapped_column(JSONType, default=dict)
    output: Mapped[Any] = mapped_column(JSONType, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    state: Mapped[Any] = mapped_column(JSONType, nullable=True)
    parent_run_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    parent_seq: Mapped[int | None] = mapped_column(Integer, nullable=True)
    parent_attempt: Mapped[int | None] = mapped_column(Integer, nullable=True)
    parent_item: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TaskExecution(Base):
    """One attempt of one task execution (`seq` numbers executions within a run, in start order)."""

    __tablename__ = "task_executions"
    __table_args__ = (UniqueConstraint("run_id", "seq", "attempt"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("workflow_runs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer)
    task: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    items: Mapped[int | None] = mapped_column(Integer, nullable=True)
    result: Mapped[Any] = mapped_column(JSONType, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    worker: Mapped[str | None] = mapped_column(String(255), nullable=True)  # the Celery hostname that ran it


class WorkflowVariable(Base):
    """A workflow variable (from `vars` and `publish`); only changed names are written per step."""

    __tablename__ = "workflow_variables"

    run_id: Mapped[str] = mapped_column(ForeignKey("workflow_runs.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[Any] = mapped_column(JSONType, nullable=True)


class Timer(Base):
    """A durable timer of a run (delayed dispatch, attempt deadline, workflow timeout), fired by
    a short countdown message when near and by the periodic tick in any case."""

    __tablename__ = "timers"
    __table_args__ = (Index("ix_timers_due_at", "due_at"),)

    run_id: Mapped[str] = mapped_column(ForeignKey("workflow_runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TaskItem(Base):
    """One call of a with_items execution: its value (after batching) and, once ended, its outcome.
    Kept out of the run's state so each item's step reads and writes one row."""

    __tablename__ = "task_items"

    run_id: Mapped[str] = mapped_column(ForeignKey("workflow_runs.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[Any] = mapped_column(JSONType, nullable=True)
    status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    result: Mapped[Any] = mapped_column(JSONType, nullable=True)


class RunEvent(Base):
    """A run's lifecycle events (lifecycle.py), written in the step that caused them: `orchestrator
    logs` and the HTTP feed read them in order."""

    __tablename__ = "run_events"
    __table_args__ = (Index("ix_run_events_run_id_id", "run_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("workflow_runs.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    kind: Mapped[str] = mapped_column(String(32))
    task: Mapped[str | None] = mapped_column(String(200), nullable=True)
    seq: Mapped[int | None] = mapped_column(Integer, nullable=True)
    attempt: Mapped[int | None] = mapped_column(Integer, nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)


class Outbox(Base):
    """What a committed step still has to publish (calls, child runs, reports to a parent run).
    Written in the step's transaction and deleted once carried out; the periodic tick carries
    out rows left behind by a process that died in between."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(64))
    payload: Mapped[Any] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)



class Schedule(Base):
    """A schedule (schedules.py): its next due time lives here, claimed by a conditional UPDATE,
    so two beat processes cannot both fire it and a restarted beat loses nothing."""

    __tablename__ = "schedules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    workflow: Mapped[str] = mapped_column(Text)
    params: Mapped[Any] = mapped_column(JSONType, default=dict)
    every: Mapped[float | None] = mapped_column(Float, nullable=True)
    cron: Mapped[str | None] = mapped_column(String(200), nullable=True)
    timezone: Mapped[str] = mapped_column(String(64))
    missed: Mapped[str] = mapped_column(String(16))
    paused: Mapped[bool] = mapped_column(default=False)
    anchor_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    next_due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ScheduleFire(Base):
    """A due time a schedule fired and the run it starts (its id derived from both). Written in
    the claim's transaction, before the start message goes out; a start message lost on the way
    is sent again while the run does not exist, each time after twice the wait. Kept with the run, deleted when it is pruned."""

    __tablename__ = "schedule_fires"
    __table_args__ = (UniqueConstraint("schedule_id", "due_at"),)

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    schedule_id: Mapped[int] = mapped_column(Integer)
    schedule: Mapped[str] = mapped_column(String(100))
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    missed: Mapped[int] = mapped_column(Integer, default=0)
    sends: Mapped[int] = mapped_column(Integer, default=1)
    fired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)



class RunCount(Base):
    """How many runs are in each terminal status, kept by database triggers on workflow_runs
    (migration 0007) as they enter and leave it, so counting them never scans finished runs.
    Spread over shards (the writing backend's pid modulo 256) so that runs finishing at once
    do not queue on one counter row; a status's count is the sum of its shards. Active runs are
    counted from ix_workflow_runs_status_created instead: they are few. A transaction that moves
    many runs updates its counter row once per run, each update slower than the last within the
    transaction (PostgreSQL follows the row's version chain): move thousands in batches."""

    __tablename__ = "run_counts"
    __table_args__ = (PrimaryKeyConstraint("status", "shard"),)

    status: Mapped[str] = mapped_column(String(16))
    shard: Mapped[int] = mapped_column(Integer)
    runs: Mapped[int] = mapped_column(BigInteger)


class Worker(Base):
    """A live worker process, as its housekeeping thread last reported it (every
    ORCHESTRATOR_HEARTBEAT_INTERVAL): the calls it holds, `[call id, pool process id, running,
    retries]` each.
    A row older than ORCHESTRATOR_WORKER_TIMEOUT is a dead worker's; what it held is restored."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    calls: Mapped[Any] = mapped_column(JSONType, default=list)


class Housekeeping(Base):
    """One row per deployment-wide housekeeping duty (housekeeping.py): when it is next due and
    which worker claimed it last, so one worker runs it per interval; `value` is what the duty
    keeps between sweeps (the broker's epoch marker, a census in progress)."""

    __tablename__ = "housekeeping"

    duty: Mapped[str] = mapped_column(String(50), primary_key=True)
    next_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    holder: Mapped[str | None] = mapped_column(String(100), nullable=True)
    value: Mapped[Any] = mapped_column(JSONType, nullable=True)


class CallOutcome(Base):
    """The envelope of a fan-in call (a chord header), written by its worker when the call ends,
    before the chord joins: the join state lives in the result backend, which can be lost. The
    step that applies the envelope deletes the row; the housekeeping sweep applies rows left
    behind. `item` is -1 for a call that is not a with_items item. No foreign key: its check
    would wait on the run's row lock."""

    __tablename__ = "call_outcomes"

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    item: Mapped[int] = mapped_column(Integer, primary_key=True)
    envelope: Mapped[Any] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
