"""The worker that ran each call: task_executions.worker (the Celery hostname, e.g. a@host-a).

Recorded when the call's outcome is applied; NULL for rows written before this migration, for
tasks no worker ran (core.ask, a sub-workflow call, an engine command) and for calls whose
worker was lost before reporting.

Revision ID: 0008
Revises: 0007
"""
from alembic import op
import sqlalchemy as sa

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A nullable column without a default: PostgreSQL adds it without rewriting the table.
    op.add_column("task_executions", sa.Column("worker", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("task_executions") as batch:
        batch.drop_column("worker")
