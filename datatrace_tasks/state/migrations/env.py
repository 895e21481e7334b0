"""Alembic environment: runs on the connection `Store` hands over."""

from __future__ import annotations

from alembic import context

from datatrace_tasks.state.engine import VERSION_TABLE
from datatrace_tasks.state.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
