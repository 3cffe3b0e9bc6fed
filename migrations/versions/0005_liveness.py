"""Liveness: worker heartbeats, deployment-wide housekeeping slots, fan-in call outcomes.

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("hostname", sa.String(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("calls", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workers")),
    )
    op.create_index(op.f("ix_workers_heartbeat_at"), "workers", ["heartbeat_at"], unique=False)
    op.create_table(
        "housekeeping",
        sa.Column("duty", sa.String(length=50), nullable=False),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("holder", sa.String(length=100), nullable=True),
        sa.Column("value", JSON, nullable=True),
        sa.PrimaryKeyConstraint("duty", name=op.f("pk_housekeeping")),
    )
    op.create_table(
        "call_outcomes",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("item", sa.Integer(), nullable=False),
        sa.Column("envelope", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "seq", "attempt", "item", name=op.f("pk_call_outcomes")),
    )
    op.create_index(op.f("ix_call_outcomes_created_at"), "call_outcomes", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_call_outcomes_created_at"), table_name="call_outcomes")
    op.drop_table("call_outcomes")
    op.drop_table("housekeeping")
    op.drop_index(op.f("ix_workers_heartbeat_at"), table_name="workers")
    op.drop_table("workers")
