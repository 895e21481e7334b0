"""Unit figures: what a unit's last run did (rows read, written, deleted, seconds), kept.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the nullable `figures` column; earlier runs have none."""
    with op.batch_alter_table("task_unit_runtimes") as batch:
        batch.add_column(sa.Column("figures", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Drop the figures column."""
    with op.batch_alter_table("task_unit_runtimes") as batch:
        batch.drop_column("figures")
