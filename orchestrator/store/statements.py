"""The supervisor step's statements as SQL text, built once.

A Core statement built and compiled per call costs about 0.15 ms of CPU, several times what
PostgreSQL spends running it on loopback; a step runs eight or so of them (see
docs/performance.md). These texts are portable between PostgreSQL and SQLite (ON CONFLICT and
RETURNING exist in both), and their JSON parameters are typed, so each dialect serialises them
as it does for the models.
"""

from __future__ import annotations

import re
from functools import lru_cache

from sqlalchemy import DateTime, String, TextClause, bindparam, text

from .models import JSONType

CREATE_RUN = text(
    "INSERT INTO workflow_runs (id, workflow, definition_id, status, params, error, created_at, updated_at, "
    "finished_at, parent_run_id, parent_seq, parent_attempt, parent_item) VALUES (:id, :workflow, :definition_id, "
    ":status, :params, :error, :now, :now, :finished_at, :parent_run_id, :parent_seq, :parent_attempt, "
    ":parent_item) ON CONFLICT (id) DO NOTHING RETURNING id"
).bindparams(bindparam("params", type_=JSONType), bindparam("finished_at", type_=DateTime(timezone=True)))



def driver_sql(clause: TextClause) -> str:
    """The same statement as psycopg's own SQL text (`:name` -> `%(name)s`), for what goes to the
    driver directly (database.first_row: with a step's or a start's BEGIN in one round trip)."""
    return re.sub(r"(?<![:\w]):(\w+)", r"%(\1)s", clause.text)


CREATE_RUN_POSTGRES = driver_sql(CREATE_RUN)

END_ATTEMPT = text(
    "UPDATE task_executions SET status = :status, result = :result, error = :error, finished_at = :now, "
    "worker = COALESCE(worker, :worker) WHERE run_id = :run_id AND seq = :seq AND attempt = :attempt"
).bindparams(bindparam("result", type_=JSONType))

# The worker (Celery hostname) that ran a call whose row the step does not otherwise write.
SET_WORKER = text(
    "UPDATE task_executions SET worker = :worker "
    "WHERE run_id = :run_id AND seq = :seq AND attempt = :attempt AND worker IS NULL")

# An attempt may start and end in the same step (its input could not be rendered or stored):
# the row is written with its outcome.
START_ATTEMPT = text(
    "INSERT INTO task_executions (run_id, seq, attempt, task, status, items, result, error, started_at, finished_at, "
    "worker) VALUES (:run_id, :seq, :attempt, :task, :status, :items, :result, :error, :now, :finished_at, :worker)"
).bindparams(bindparam("result", type_=JSONType), bindparam("finished_at", type_=DateTime(timezone=True)))

SET_TIMER = text(
    "INSERT INTO timers (run_id, key, due_at) VALUES (:run_id, :key, :due_at) "
    "ON CONFLICT (run_id, key) DO UPDATE SET due_at = excluded.due_at")

CANCEL_TIMER = text("DELETE FROM timers WHERE run_id = :run_id AND key = :key")

CANCEL_ALL_TIMERS = text("DELETE FROM timers WHERE run_id = :run_id")

UPSERT_VARIABLE = text(
    "INSERT INTO workflow_variables (run_id, name, value) VALUES (:run_id, :name, :value) "
    "ON CONFLICT (run_id, name) DO UPDATE SET value = excluded.value"
).bindparams(bindparam("value", type_=JSONType))

ADD_EVENT = text(
    "INSERT INTO run_events (run_id, at, kind, task, seq, attempt, message) "
    "VALUES (:run_id, :at, :kind, :task, :seq, :attempt, :message)")

ADD_OUTBOX = text(
    "INSERT INTO outbox (run_id, payload, created_at) VALUES (:run_id, :payload, :now) RETURNING id"
).bindparams(bindparam("payload", type_=JSONType))

REMOVE_OUTBOX = text("DELETE FROM outbox WHERE id IN :ids").bindparams(bindparam("ids", expanding=True))
REMOVE_RUN_OUTBOX = text("DELETE FROM outbox WHERE id IN :ids AND run_id = :run_id").bindparams(
    bindparam("ids", expanding=True))

# The run row and its variables in one round trip, the row locked (PostgreSQL only: SQLite
# transactions are serialised by the process).
READ_RUN_POSTGRES = text(
    "SELECT r.*, (SELECT jsonb_object_agg(v.name, v.value) FROM workflow_variables v WHERE v.run_id = r.id) "
    "AS variables FROM workflow_runs r WHERE r.id = :run_id")
LOCK_RUN_POSTGRES = driver_sql(READ_RUN_POSTGRES) + " FOR UPDATE OF r"
LOCK_RUN_POSTGRES_SKIP = LOCK_RUN_POSTGRES + " SKIP LOCKED"

_JSON_COLUMNS = frozenset({"state", "output", "params"})
_TIME_COLUMNS = frozenset({"updated_at", "started_at", "finished_at"})


@lru_cache(maxsize=64)
def update_run(columns: tuple[str, ...]) -> TextClause:
    """UPDATE workflow_runs SET <columns> for one run; a step sets one of a few column sets."""
    assignments = ", ".join(f"{name} = :{name}" for name in columns)
    params = [bindparam(name, type_=JSONType if name in _JSON_COLUMNS else
                        DateTime(timezone=True) if name in _TIME_COLUMNS else String()) for name in columns]
    return text(f"UPDATE workflow_runs SET {assignments} WHERE id = :run_id").bindparams(*params)
