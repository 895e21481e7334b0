"""Shared fixtures: one Prefect test harness per session, and stores on every backend."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator

# Prefect reads its home and settings at import: point them at a scratch folder first.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="datatrace-prefect-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from datatrace_tasks.orchestration.manager import TaskManager
from datatrace_tasks.state.store import Store

MYSQL_ENV = "DATATRACE_TEST_MYSQL_URL"
POSTGRES_ENV = "DATATRACE_TEST_POSTGRES_URL"


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A temporary Prefect server shared by every test that runs a flow."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def _scratch_database(env: str) -> Iterator[str]:
    """Create a throwaway database on the server named by `env`, yield its URL, drop it."""
    server = os.environ.get(env)
    if not server:
        if os.environ.get("DATATRACE_REQUIRE_SERVERS"):
            pytest.fail(f"{env} is not set, and CI requires the real server tests to run")
        pytest.skip(f"set {env} to run this test against a real server")
    base = make_url(server)
    name = f"dt_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    quoted = admin.dialect.identifier_preparer.quote(name)
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {quoted}"))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            if admin.dialect.name == "postgresql":
                conn.execute(text(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
            else:
                conn.execute(text(f"DROP DATABASE IF EXISTS {quoted}"))
        admin.dispose()


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("mysql", marks=pytest.mark.mysql),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
def store_url(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[str]:
    """The URL of an empty state store on SQLite, MariaDB or PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/state.db"
    elif request.param == "mysql":
        yield from _scratch_database(MYSQL_ENV)
    else:
        yield from _scratch_database(POSTGRES_ENV)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A migrated state store on each backend."""
    s = Store(store_url)
    yield s
    s.dispose()


@pytest.fixture
def manager(store: Store) -> TaskManager:
    """A TaskManager over the store, writing progress at most every 50 ms."""
    return TaskManager(store, progress_interval=0.05)
