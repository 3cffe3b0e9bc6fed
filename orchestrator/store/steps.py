"""How one conductor step becomes rows.

The step's commands are first folded into the rows they leave (`StepRows`: an attempt started
and ended in the same step is one row, a timer set then cancelled is one delete), then written.
On PostgreSQL everything goes as one statement of data-modifying CTEs, sent with the COMMIT
(database.last_row): a supervisor step is then two round trips (BEGIN with the lock, the write with
the COMMIT) however many rows it touches, where a statement per kind of row cost ten
(docs/performance.md). SQLite, used by the embedded runtime, gets a statement per
kind of row. The CTEs of one statement share a snapshot and must not touch a row twice, which
the folding guarantees.

A step decided from a run snapshot (store/snapshot.py) writes only if the run row is still the
version it was decided from: the run's update is conditional on the row's `xmin` and
`updated_at`, and every other CTE waits for it and writes nothing without it. The statement
returns the row's new version either way it wrote (the next step's snapshot names it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable

from psycopg.types.json import Jsonb
from sqlalchemy import Connection

from ..engine.commands import (CancelTimer, Command, ExecutionEnded, ExecutionStarted, RunFinished, SetTimer,
                               StatusChanged, VariablesSet)
from ..lifecycle import LifecycleEvent
from ..secrets import Redactor
from . import statements as sql
from .database import last_row

RUN_FINISHED = "orchestrator_run_finished"  # PostgreSQL NOTIFY channel: the payload is the run id


@dataclass
class StepRows:
    run_id: str
    now: datetime
    run: dict[str, Any]
    started: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)  # new attempt rows
    ended: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)    # earlier attempts that ended
    timers: dict[str, datetime | None] = field(default_factory=dict)              # key -> due, None: delete
    clear_timers: bool = False
    variables: dict[str, Any] = field(default_factory=dict)
    events: list[LifecycleEvent] = field(default_factory=list)
    finished: bool = False
    outbox: dict[str, Any] | None = None    # the step's effects to carry out (supervisor._record)
    forget: list[int] = field(default_factory=list)  # the run's outbox rows carried out earlier
    hosted: dict[tuple[int, int], str] = field(default_factory=dict)  # workers of calls whose rows stay as they are
    expect: tuple[str, datetime] | None = None  # write only over this version of the run row (xmin, updated_at)
    state_json: str | None = None  # the state's JSON text as written (PostgreSQL): sizes and checks the snapshot


@dataclass
class Written:
    """What a step's write left: the id of its outbox row, the run row's new version (xmin as
    text; None when a conditional write found another version, or on SQLite) and whether it
    wrote at all."""

    outbox_id: int | None
    version: str | None
    applied: bool = True


def fold(run_id: str, state_data: dict[str, Any], commands: list[Command], now: datetime,
         started_at: datetime | None, redact: Redactor) -> StepRows:
    run: dict[str, Any] = {"state": state_data, "updated_at": now}
    if started_at is not None:
        run.update(status="running", started_at=started_at)
    rows = StepRows(run_id, now, run)
    for command in commands:
        if isinstance(command, ExecutionStarted):
            rows.started[(command.seq, command.attempt)] = dict(
                seq=command.seq, attempt=command.attempt, task=command.task, status="running", items=command.items,
                result=None, error=None, finished_at=None, worker=None)
        elif isinstance(command, ExecutionEnded):
            key = (command.seq, command.attempt)
            outcome = dict(status=command.status, result=redact.data(command.result), error=redact.text(command.error))
            if key in rows.started:
                rows.started[key].update(outcome, finished_at=now)
            else:
                rows.ended[key] = dict(seq=command.seq, attempt=command.attempt, worker=None, **outcome)
        elif isinstance(command, VariablesSet):
            rows.variables.update(command.values)
        elif isinstance(command, SetTimer):
            rows.timers[command.key] = now + timedelta(seconds=command.seconds)
        elif isinstance(command, CancelTimer):
            rows.timers[command.key] = None
        elif isinstance(command, StatusChanged):
            run["status"] = command.status
            if command.status == "running":  # a rerun reopens a finished run
                run.update(finished_at=None, error=None, output=None)
        elif isinstance(command, RunFinished):
            run.update(status=command.status, output=redact.data(command.output), error=redact.text(command.error),
                       finished_at=now)
            rows.clear_timers, rows.finished = True, True
    if rows.clear_timers:
        rows.timers = {}  # a finished run has no timers, whatever the step set after finishing
    return rows


def add_hosts(rows: StepRows, hosts: Iterable[tuple[int, int, str]]) -> None:
    """The worker that ran each call goes with the write of its row when the step writes it (a row
    is touched once per statement), else as an update of its own (`hosted`); the first reported
    host of a call is kept."""
    for seq, attempt, worker in hosts:
        key, worker = (seq, attempt), worker[:255]
        row = rows.started.get(key) or rows.ended.get(key)
        if row is not None:
            row["worker"] = row["worker"] or worker
        else:
            rows.hosted.setdefault(key, worker)


def write(conn: Connection, rows: StepRows, redact: Redactor) -> Written:
    """Write the folded rows (with `rows.expect`, only over that version of the run row)."""
    if conn.dialect.name == "postgresql":
        return _write_postgres(conn, rows, redact)
    if rows.expect is not None:
        raise ValueError("a write conditional on the run row's version needs PostgreSQL")
    return Written(_write_generic(conn, rows, redact), None)


def event_rows(events: list[LifecycleEvent], redact: Redactor) -> list[dict[str, Any]]:
    return [dict(kind=e.kind, task=e.task, seq=e.seq, attempt=e.attempt, message=redact.text(e.message))
            for e in events]


def _write_generic(conn: Connection, rows: StepRows, redact: Redactor) -> int | None:
    run_id, now = rows.run_id, rows.now
    if rows.forget:
        conn.execute(sql.REMOVE_RUN_OUTBOX, {"ids": rows.forget, "run_id": run_id})
    if rows.started:
        conn.execute(sql.START_ATTEMPT, [dict(row, run_id=run_id, now=now) for row in rows.started.values()])
    for row in rows.ended.values():
        conn.execute(sql.END_ATTEMPT, dict(row, run_id=run_id, now=now))
    for (seq, attempt), worker in rows.hosted.items():
        conn.execute(sql.SET_WORKER, dict(run_id=run_id, seq=seq, attempt=attempt, worker=worker))
    if rows.variables:
        conn.execute(sql.UPSERT_VARIABLE, [dict(run_id=run_id, name=name, value=value)
                                           for name, value in rows.variables.items()])
    if rows.clear_timers:
        conn.execute(sql.CANCEL_ALL_TIMERS, {"run_id": run_id})
    for key, due in rows.timers.items():
        if due is None:
            conn.execute(sql.CANCEL_TIMER, dict(run_id=run_id, key=key))
        else:
            conn.execute(sql.SET_TIMER, dict(run_id=run_id, key=key, due_at=due))
    conn.execute(sql.update_run(tuple(rows.run)), {**rows.run, "run_id": run_id})
    events = event_rows(rows.events, redact)
    if events:
        conn.execute(sql.ADD_EVENT, [dict(e, run_id=run_id, at=now) for e in events])
    if rows.outbox is not None:
        return conn.execute(sql.ADD_OUTBOX, {"run_id": run_id, "payload": rows.outbox, "now": now}).scalar_one()
    return None


def _json(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value)


_RUN_COLUMNS = {"state": "jsonb", "output": "jsonb", "status": "text", "error": "text",
                "updated_at": "timestamptz", "started_at": "timestamptz", "finished_at": "timestamptz"}


def _write_postgres(conn: Connection, rows: StepRows, redact: Redactor) -> Written:
    """One statement: each kind of row is a CTE fed by arrays (unnest), so its text depends only
    on which kinds a step has (and whether it is conditional) and psycopg prepares each shape
    once per connection. With `rows.expect`, `gate` makes every CTE wait for the run row's
    conditional update and write nothing without it."""
    params: dict[str, Any] = {"run_id": rows.run_id, "now": rows.now}
    conditional = rows.expect is not None
    where_gate = " WHERE EXISTS (SELECT FROM run)" if conditional else ""  # INSERT ... SELECT
    and_gate = " AND EXISTS (SELECT FROM run)" if conditional else ""      # UPDATE / DELETE
    ctes: list[str] = []
    assignments = []
    for name, value in rows.run.items():
        if _RUN_COLUMNS[name] == "jsonb" and value is not None:
            value = json.dumps(value)  # as psycopg's Jsonb would
            if name == "state":
                rows.state_json = value
        params[f"r_{name}"] = value
        assignments.append(f"{name} = %(r_{name})s::{_RUN_COLUMNS[name]}")
    condition = ""
    if rows.expect is not None:
        params["seen_version"], params["seen_at"] = rows.expect
        condition = " AND xmin::text = %(seen_version)s AND updated_at = %(seen_at)s"
    ctes.append(f"run AS (UPDATE workflow_runs SET {', '.join(assignments)} WHERE id = %(run_id)s{condition} "
                "RETURNING xmin::text AS version)")
    if rows.started:
        started = list(rows.started.values())
        params.update(s_seq=[r["seq"] for r in started], s_attempt=[r["attempt"] for r in started],
                      s_task=[r["task"] for r in started], s_status=[r["status"] for r in started],
                      s_items=[r["items"] for r in started], s_result=[_json(r["result"]) for r in started],
                      s_error=[r["error"] for r in started], s_finished=[r["finished_at"] for r in started],
                      s_worker=[r["worker"] for r in started])
        ctes.append(
            "started AS (INSERT INTO task_executions (run_id, seq, attempt, task, status, items, result, error, "
            "started_at, finished_at, worker) SELECT %(run_id)s, u.seq, u.attempt, u.task, u.status, u.items, "
            "u.result, u.error, %(now)s, u.finished, u.worker FROM unnest(%(s_seq)s::int[], %(s_attempt)s::int[], "
            "%(s_task)s::text[], %(s_status)s::text[], %(s_items)s::int[], %(s_result)s::jsonb[], %(s_error)s::text[], "
            "%(s_finished)s::timestamptz[], %(s_worker)s::text[]) "
            f"AS u(seq, attempt, task, status, items, result, error, finished, worker){where_gate})")
    # The updates name their rows' seqs (= ANY) besides the join: the index finds them whatever
    # the planner knows of the table, where a join on run_id alone read every row of the run.
    if rows.ended:
        ended = list(rows.ended.values())
        params.update(e_seq=[r["seq"] for r in ended], e_attempt=[r["attempt"] for r in ended],
                      e_status=[r["status"] for r in ended], e_result=[_json(r["result"]) for r in ended],
                      e_error=[r["error"] for r in ended], e_worker=[r["worker"] for r in ended])
        ctes.append(
            "ended AS (UPDATE task_executions t SET status = u.status, result = u.result, error = u.error, "
            "finished_at = %(now)s, worker = COALESCE(t.worker, u.worker) FROM unnest(%(e_seq)s::int[], "
            "%(e_attempt)s::int[], %(e_status)s::text[], %(e_result)s::jsonb[], %(e_error)s::text[], "
            "%(e_worker)s::text[]) AS u(seq, attempt, status, result, error, worker) "
            "WHERE t.run_id = %(run_id)s AND t.seq = ANY(%(e_seq)s::int[]) AND t.seq = u.seq "
            f"AND t.attempt = u.attempt{and_gate})")
    if rows.hosted:
        params.update(h_seq=[seq for seq, _ in rows.hosted], h_attempt=[attempt for _, attempt in rows.hosted],
                      h_worker=list(rows.hosted.values()))
        ctes.append(
            "hosted AS (UPDATE task_executions t SET worker = u.worker FROM unnest(%(h_seq)s::int[], "
            "%(h_attempt)s::int[], %(h_worker)s::text[]) AS u(seq, attempt, worker) "
            "WHERE t.run_id = %(run_id)s AND t.seq = ANY(%(h_seq)s::int[]) AND t.seq = u.seq "
            f"AND t.attempt = u.attempt AND t.worker IS NULL{and_gate})")
    if rows.variables:
        params.update(v_name=list(rows.variables), v_value=[Jsonb(v) for v in rows.variables.values()])
        ctes.append(
            "variables AS (INSERT INTO workflow_variables (run_id, name, value) SELECT %(run_id)s, u.name, u.value "
            f"FROM unnest(%(v_name)s::text[], %(v_value)s::jsonb[]) AS u(name, value){where_gate} "
            "ON CONFLICT (run_id, name) DO UPDATE SET value = excluded.value)")
    if rows.clear_timers:
        ctes.append(f"cleared AS (DELETE FROM timers WHERE run_id = %(run_id)s{and_gate})")
    dropped = [key for key, due in rows.timers.items() if due is None]
    if dropped:
        params["t_drop"] = dropped
        ctes.append("dropped AS (DELETE FROM timers WHERE run_id = %(run_id)s AND key = ANY(%(t_drop)s::text[])"
                    f"{and_gate})")
    due = {key: at for key, at in rows.timers.items() if at is not None}
    if due:
        params.update(t_key=list(due), t_due=list(due.values()))
        ctes.append(
            "timed AS (INSERT INTO timers (run_id, key, due_at) SELECT %(run_id)s, u.key, u.due "
            f"FROM unnest(%(t_key)s::text[], %(t_due)s::timestamptz[]) AS u(key, due){where_gate} "
            "ON CONFLICT (run_id, key) DO UPDATE SET due_at = excluded.due_at)")
    events = event_rows(rows.events, redact)
    if events:
        params.update(ev_kind=[e["kind"] for e in events], ev_task=[e["task"] for e in events],
                      ev_seq=[e["seq"] for e in events], ev_attempt=[e["attempt"] for e in events],
                      ev_message=[e["message"] for e in events])
        ctes.append(
            "events AS (INSERT INTO run_events (run_id, at, kind, task, seq, attempt, message) "
            "SELECT %(run_id)s, %(now)s, u.kind, u.task, u.seq, u.attempt, u.message FROM unnest(%(ev_kind)s::text[], "
            "%(ev_task)s::text[], %(ev_seq)s::int[], %(ev_attempt)s::int[], %(ev_message)s::text[]) "
            f"WITH ORDINALITY AS u(kind, task, seq, attempt, message, n){where_gate} ORDER BY u.n)")
    if rows.forget:
        params["o_forget"] = rows.forget
        ctes.append("forgotten AS (DELETE FROM outbox WHERE id = ANY(%(o_forget)s::bigint[]) "
                    f"AND run_id = %(run_id)s{and_gate})")  # never another run's rows: a step stays inside its run
    if rows.outbox is not None:
        params["o_payload"] = Jsonb(rows.outbox)
        ctes.append("outbox AS (INSERT INTO outbox (run_id, payload, created_at) "
                    f"SELECT %(run_id)s, %(o_payload)s::jsonb, %(now)s::timestamptz{where_gate} RETURNING id)")
    select = ["(SELECT id FROM outbox)" if rows.outbox is not None else "NULL::bigint", "(SELECT version FROM run)"]
    if rows.finished:  # delivered at commit: wakes RunHandle.wait()
        params["channel"] = RUN_FINISHED
        select.append("(SELECT pg_notify(%(channel)s, %(run_id)s) FROM run)")
    statement = "WITH " + ",\n".join(ctes) + "\nSELECT " + ", ".join(select)
    row = last_row(conn, statement, params)  # in a Database.step(), with its COMMIT
    return Written(row[0], row[1], applied=row[1] is not None)
