"""The schema. One row per run, per task execution attempt and per workflow variable, so a step
writes a constant number of rows however long the run's history is."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, MetaData, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

JSONType = JSON().with_variant(JSONB(), "postgresql")

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
    __table_args__ = (Index("ix_workflow_runs_status_created", "status", "created_at"),)

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

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
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

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
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

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(64))
    payload: Mapped[Any] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


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
