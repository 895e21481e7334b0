"""Alembic migrations of the state store, applied on first use by `Store`."""
