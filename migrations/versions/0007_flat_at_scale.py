"""Flat at ten million runs: bigint ids, the newest-runs index, counts of finished runs.

- task_executions, run_events and outbox ids (and their sequences) become bigint: at 10^3 rows a
  second int4 runs out in about 25 days. On PostgreSQL this rewrites those three tables under an
  exclusive lock (minutes at 10^7 rows: plan a maintenance window for a large deployment).
- ix_workflow_runs_created_at serves `ORDER BY created_at DESC LIMIT n` (list, /api/runs, the
  web view's poll) without sorting every run.
- run_counts holds how many runs are in each terminal status, kept by triggers on workflow_runs as
  runs enter and leave one (a finish, a rerun, a deletion), spread over shards (the backend's pid
  modulo 256) so that runs finishing at once do not queue on one row. The metrics scrape adds
  them up instead of counting every finished run. Filled here from the runs already stored;
  creating the triggers locks out writers until this migration commits, so nothing is missed.

Revision ID: 0007
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TERMINAL = ("succeeded", "failed", "canceled")  # as orchestrator.store.runs.TERMINAL (a test checks)
SHARDS = 256
BIG_IDS = ("task_executions", "run_events", "outbox")
_TERMINAL_SQL = ", ".join(f"'{status}'" for status in TERMINAL)

_PG_FUNCTION = f"""
CREATE FUNCTION orchestrator_count_runs() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    backend_shard integer := pg_backend_pid() % {SHARDS};
BEGIN
    IF TG_OP <> 'INSERT' AND OLD.status IN ({_TERMINAL_SQL}) THEN
        INSERT INTO run_counts (status, shard, runs) VALUES (OLD.status, backend_shard, -1)
        ON CONFLICT ON CONSTRAINT pk_run_counts DO UPDATE SET runs = run_counts.runs - 1;
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.status IN ({_TERMINAL_SQL}) THEN
        INSERT INTO run_counts (status, shard, runs) VALUES (NEW.status, backend_shard, 1)
        ON CONFLICT ON CONSTRAINT pk_run_counts DO UPDATE SET runs = run_counts.runs + 1;
    END IF;
    RETURN NULL;
END
$$
"""

# The WHEN clauses keep the function out of every other write: a step that does not move a run
# into or out of a terminal status costs nothing more.
_PG_TRIGGERS = (
    f"CREATE TRIGGER run_counts_insert AFTER INSERT ON workflow_runs FOR EACH ROW "
    f"WHEN (NEW.status IN ({_TERMINAL_SQL})) EXECUTE FUNCTION orchestrator_count_runs()",
    f"CREATE TRIGGER run_counts_update AFTER UPDATE OF status ON workflow_runs FOR EACH ROW "
    f"WHEN (OLD.status IS DISTINCT FROM NEW.status AND "
    f"(OLD.status IN ({_TERMINAL_SQL}) OR NEW.status IN ({_TERMINAL_SQL}))) EXECUTE FUNCTION orchestrator_count_runs()",
    f"CREATE TRIGGER run_counts_delete AFTER DELETE ON workflow_runs FOR EACH ROW "
    f"WHEN (OLD.status IN ({_TERMINAL_SQL})) EXECUTE FUNCTION orchestrator_count_runs()",
)


def _sqlite_upsert(status: str, delta: str) -> str:
    return (f"INSERT INTO run_counts (status, shard, runs) VALUES ({status}, 0, {delta}) "
            f"ON CONFLICT (status, shard) DO UPDATE SET runs = runs + ({delta});")


# SQLite (the embedded runtime, one process): the same counts, one shard.
_SQLITE_TRIGGERS = (
    f"CREATE TRIGGER run_counts_insert AFTER INSERT ON workflow_runs "
    f"WHEN NEW.status IN ({_TERMINAL_SQL}) BEGIN {_sqlite_upsert('NEW.status', '1')} END",
    f"CREATE TRIGGER run_counts_leave AFTER UPDATE OF status ON workflow_runs "
    f"WHEN OLD.status IS NOT NEW.status AND OLD.status IN ({_TERMINAL_SQL}) "
    f"BEGIN {_sqlite_upsert('OLD.status', '-1')} END",
    f"CREATE TRIGGER run_counts_enter AFTER UPDATE OF status ON workflow_runs "
    f"WHEN OLD.status IS NOT NEW.status AND NEW.status IN ({_TERMINAL_SQL}) "
    f"BEGIN {_sqlite_upsert('NEW.status', '1')} END",
    f"CREATE TRIGGER run_counts_delete AFTER DELETE ON workflow_runs "
    f"WHEN OLD.status IN ({_TERMINAL_SQL}) BEGIN {_sqlite_upsert('OLD.status', '-1')} END",
)


def upgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    if postgres:
        for table in BIG_IDS:
            op.alter_column(table, "id", type_=sa.BigInteger(), existing_type=sa.Integer(),
                            existing_nullable=False)
            sequence = bind.execute(sa.text("SELECT pg_get_serial_sequence(:table, 'id')"),
                                    {"table": table}).scalar()
            if sequence:  # AS bigint also lifts the maximum, which was int4's
                op.execute(f"ALTER SEQUENCE {sequence} AS bigint")
    op.create_index("ix_workflow_runs_created_at", "workflow_runs", ["created_at"], unique=False)
    op.create_table(
        "run_counts",
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("runs", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("status", "shard", name=op.f("pk_run_counts")),
    )
    if postgres:
        op.execute(_PG_FUNCTION)
        for statement in _PG_TRIGGERS:
            op.execute(statement)
    else:
        for statement in _SQLITE_TRIGGERS:
            op.execute(statement)
    op.execute(f"INSERT INTO run_counts (status, shard, runs) SELECT status, 0, count(*) FROM workflow_runs "
               f"WHERE status IN ({_TERMINAL_SQL}) GROUP BY status")


def downgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    if postgres:
        for name in ("run_counts_insert", "run_counts_update", "run_counts_delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON workflow_runs")
        op.execute("DROP FUNCTION IF EXISTS orchestrator_count_runs()")
    else:
        for name in ("run_counts_insert", "run_counts_leave", "run_counts_enter", "run_counts_delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.drop_table("run_counts")
    op.drop_index("ix_workflow_runs_created_at", table_name="workflow_runs")
    if postgres:
        for table in BIG_IDS:
            sequence = bind.execute(sa.text("SELECT pg_get_serial_sequence(:table, 'id')"),
                                    {"table": table}).scalar()
            if sequence:
                op.execute(f"ALTER SEQUENCE {sequence} AS integer")
            op.alter_column(table, "id", type_=sa.Integer(), existing_type=sa.BigInteger(),
                            existing_nullable=False)
