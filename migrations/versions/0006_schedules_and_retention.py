"""Schedules, the due times they fired, and deployment-wide periodic jobs (the daily prune).

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("workflow", sa.Text(), nullable=False),
        sa.Column("params", JSON, nullable=False),
        sa.Column("every", sa.Float(), nullable=True),
        sa.Column("cron", sa.String(length=200), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("missed", sa.String(length=16), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("anchor_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedules")),
        sa.UniqueConstraint("name", name=op.f("uq_schedules_name")),
    )
    op.create_index(op.f("ix_schedules_next_due_at"), "schedules", ["next_due_at"], unique=False)
    op.create_table(
        "schedule_fires",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("schedule_id", sa.Integer(), nullable=False),
        sa.Column("schedule", sa.String(length=100), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("missed", sa.Integer(), nullable=False),
        sa.Column("sends", sa.Integer(), nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_schedule_fires")),
        sa.UniqueConstraint("schedule_id", "due_at", name=op.f("uq_schedule_fires_schedule_id")),
    )
    op.create_index(op.f("ix_schedule_fires_fired_at"), "schedule_fires", ["fired_at"], unique=False)
    # Retention finds finished runs by age; sub-workflow runs by parent (already indexed).
    op.create_index("ix_workflow_runs_finished_at", "workflow_runs", ["finished_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_workflow_runs_finished_at", table_name="workflow_runs")
    op.drop_index(op.f("ix_schedule_fires_fired_at"), table_name="schedule_fires")
    op.drop_table("schedule_fires")
    op.drop_index(op.f("ix_schedules_next_due_at"), table_name="schedules")
    op.drop_table("schedules")
