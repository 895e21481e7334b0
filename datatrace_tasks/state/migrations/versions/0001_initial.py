"""Initial state store: sync_tasks, task_unit_runtimes, task_unit_events.

Revision ID: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from datatrace_tasks.state.models import UNIT_ID_LENGTH, EventId, Timestamp

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the three tables."""
    op.create_table(
        "sync_tasks",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("concurrency", sa.Integer, nullable=False),
        sa.Column("error_strategy", sa.String(8), nullable=False),
        sa.Column("source", sa.String(1024), nullable=False),
        sa.Column("target", sa.String(1024), nullable=False),
        sa.Column("spec", sa.JSON, nullable=True),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("pause_requested", sa.Boolean, nullable=False),
        sa.Column("owner", sa.String(255), nullable=True),
        sa.Column("heartbeat_at", Timestamp, nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
    )
    op.create_table(
        "task_unit_runtimes",
        sa.Column("id", EventId, primary_key=True, autoincrement=True),
        sa.Column(
            "task_id",
            sa.String(36),
            sa.ForeignKey("sync_tasks.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("unit_id", sa.String(UNIT_ID_LENGTH), nullable=False),
        sa.Column("name", sa.String(UNIT_ID_LENGTH), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("total_records", sa.BigInteger, nullable=False),
        sa.Column("processed_records", sa.BigInteger, nullable=False),
        sa.Column("percentage", sa.Float, nullable=False),
        sa.Column("error_message", sa.Text, nullable=False),
        sa.Column("checkpoint", sa.JSON, nullable=True),
        sa.Column("verification", sa.JSON, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("started_at", Timestamp, nullable=True),
        sa.Column("finished_at", Timestamp, nullable=True),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.UniqueConstraint("task_id", "unit_id", name="uq_task_unit"),
    )
    op.create_index("ix_task_unit_runtimes_task_id", "task_unit_runtimes", ["task_id"])
    op.create_table(
        "task_unit_events",
        sa.Column("id", EventId, primary_key=True, autoincrement=True),
        sa.Column("task_id", sa.String(36), nullable=False),
        sa.Column("unit_id", sa.String(UNIT_ID_LENGTH), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("processed_records", sa.BigInteger, nullable=False),
        sa.Column("total_records", sa.BigInteger, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
    )
    op.create_index("ix_task_unit_events_task_id", "task_unit_events", ["task_id"])


def downgrade() -> None:
    """Drop the three tables."""
    op.drop_table("task_unit_events")
    op.drop_table("task_unit_runtimes")
    op.drop_table("sync_tasks")
