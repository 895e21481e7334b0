"""Shared fixtures: one Prefect test harness per session (per xdist worker), and stores on
every backend; the `prefect` marker; the figures the fault tests print at the end."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from typing import Any

# Prefect reads its home and settings at import: point them at a scratch folder first
# (xdist workers inherit their controller's).
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="datatrace-prefect-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
# Commands the tests start must not leave the shared local Prefect server running
# (tests/cli/test_prefect_server.py tests that server on purpose).
os.environ.setdefault("DATATRACE_PREFECT_SERVER", "ephemeral")

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from datatrace_tasks.orchestration.manager import TaskManager
from datatrace_tasks.state.store import Store
from datatrace_tasks.testing import temporary_store

MYSQL_ENV = "DATATRACE_TEST_MYSQL_URL"
POSTGRES_ENV = "DATATRACE_TEST_POSTGRES_URL"

FIGURES: list[str] = []
"""Lines the fault tests measured, printed at the end of the session (`make soak` too)."""


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `prefect` every test using the harness (before `-m` deselects: `make check`)."""
    for item in items:
        if "prefect_harness" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.prefect)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """In an xdist worker, hand the figures it measured to the controller."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["datatrace_figures"] = list(FIGURES)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """In the xdist controller, gather a finished worker's figures."""
    FIGURES.extend(getattr(node, "workeroutput", {}).get("datatrace_figures", []))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print what the fault tests measured."""
    if FIGURES:
        terminalreporter.section("fault figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


SERIAL_SCOPES = {
    "tests/faults/": "mariadb-faults",
    "tests/sync/test_bulk.py::TestLoadData::": "mariadb-local-infile",
    "tests/sync/test_infile.py::": "mariadb-local-infile",
}
"""Tests (by node id prefix) that one xdist worker runs one after another, never beside
each other: the fault tests, so two of them never share MariaDB's 151 connections (the
pause storm alone holds about 100), and the tests that need LOAD DATA LOCAL on with the
one that turns it off server-wide."""


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadgroup` (`make test`) that also keeps each of SERIAL_SCOPES on one worker.

    Not with `xdist_group` marks: with pytest 9.2 they no longer reach the controller,
    which then spreads the tests as if unmarked (pytest-dev/pytest-xdist#1386).
    """
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class SerialScopes(LoadGroupScheduling):  # type: ignore[misc]  # xdist is untyped
        def _split_scope(self, nodeid: str) -> str:
            for prefix, scope in SERIAL_SCOPES.items():
                if nodeid.startswith(prefix):
                    return scope
            return str(super()._split_scope(nodeid))

    return SerialScopes(config, log)


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A temporary Prefect server shared by every test that runs a flow."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def prefect_api_url(prefect_harness: None) -> str:
    """The harness server's API URL, for child processes that run flows.

    A `datatrace run` or `resume` without PREFECT_API_URL starts a temporary Prefect
    server of its own (10 to 25 s on 2 cores); with it, the child uses the session's.
    """
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    assert url, "the Prefect test harness set no API URL"
    return str(url)


def server_url(env: str) -> str:
    """The real server's URL from `env`; skips the test when unset, or fails it when
    DATATRACE_REQUIRE_SERVERS is set (CI must not skip the server tests)."""
    server = os.environ.get(env)
    if not server:
        if os.environ.get("DATATRACE_REQUIRE_SERVERS"):
            pytest.fail(f"{env} is not set, and CI requires the real server tests to run")
        pytest.skip(f"set {env} to run this test against a real server")
    return server


def _scratch_database(env: str) -> Iterator[str]:
    """Create a throwaway database on the server named by `env`, yield its URL, drop it."""
    base = make_url(server_url(env))
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


def store_backends(mysql: str = "mysql") -> list[Any]:
    """The state-store backends as fixture params: SQLite, MariaDB (named `mysql`), PostgreSQL."""
    return [
        "sqlite",
        pytest.param(mysql, marks=pytest.mark.mysql),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]


def store_on(
    backend: str, tmp_path: object, mariadb: Callable[[], Iterator[str]] | None = None
) -> Iterator[str]:
    """Yield the URL of an empty state store on `backend` (a `store_backends` value): a SQLite
    file in tmp_path, a scratch PostgreSQL database, or a MariaDB one (from `mariadb` if given)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path}/state.db"
    elif backend == "postgres":
        yield from _scratch_database(POSTGRES_ENV)
    elif mariadb is not None:
        yield from mariadb()
    else:
        yield from _scratch_database(MYSQL_ENV)


@pytest.fixture(params=store_backends())
def store_url(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[str]:
    """The URL of an empty state store on SQLite, MariaDB or PostgreSQL."""
    yield from store_on(request.param, tmp_path)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A migrated state store on each backend."""
    with temporary_store(store_url) as s:
        yield s


@pytest.fixture
def sqlite_store() -> Iterator[Store]:
    """A migrated state store on a temporary SQLite file of its own, removed after the test."""
    with temporary_store() as s:
        yield s


@pytest.fixture
def manager(store: Store) -> TaskManager:
    """A TaskManager over the store, writing progress at most every 50 ms."""
    return TaskManager(store, progress_interval=0.05)
