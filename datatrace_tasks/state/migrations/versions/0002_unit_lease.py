"""Unit leases: one runner per unit, even across hosts (`lease_owner`, `lease_expires_at`).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from datatrace_tasks.state.models import Timestamp

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the two nullable lease columns; existing rows hold no lease."""
    with op.batch_alter_table("task_unit_runtimes") as batch:
        batch.add_column(sa.Column("lease_owner", sa.String(255), nullable=True))
        batch.add_column(sa.Column("lease_expires_at", Timestamp, nullable=True))


def downgrade() -> None:
    """Drop the lease columns."""
    with op.batch_alter_table("task_unit_runtimes") as batch:
        batch.drop_column("lease_expires_at")
        batch.drop_column("lease_owner")
