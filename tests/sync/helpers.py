"""Shared pieces of the copy-engine tests: the target kinds, the copy kit, one-statement queries."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from datatrace_tasks.state.units import TaskUnit
from datatrace_tasks.sync import rangecopy
from datatrace_tasks.sync.bulk import BulkState
from datatrace_tasks.sync.copy import copy_table
from datatrace_tasks.sync.ddl import target_table
from datatrace_tasks.sync.engines import Databases
from datatrace_tasks.sync.job import Job, job_from_dict
from datatrace_tasks.sync.verify import VerificationResult, verify_table
from datatrace_tasks.testing import MemoryReporter

# Every target kind, for `@pytest.mark.parametrize("kind", TARGETS)`; the source is MariaDB.
TARGETS = [
    pytest.param("mysql", marks=pytest.mark.mysql, id="mariadb"),
    pytest.param("postgres", marks=[pytest.mark.mysql, pytest.mark.postgres], id="postgres"),
    pytest.param("sqlite", marks=pytest.mark.mysql, id="sqlite"),
]


def make_job(source: URL, target: URL, **options: Any) -> Job:
    """A validated job between two URLs."""
    data = {
        "name": "test",
        "source": source.render_as_string(hide_password=False),
        "target": target.render_as_string(hide_password=False),
        **options,
    }
    return job_from_dict(data)


def run_unit(job: Job, table: str, reporter: MemoryReporter | None = None) -> Any:
    """Run the process function on one table; returns the unit."""
    unit = TaskUnit(id=table, name=table)
    dbs = Databases(job.source_url, job.target_url)
    try:
        copy_table(dbs, job, unit, reporter or MemoryReporter())
    finally:
        dbs.dispose()
    return unit


def verify_one(dbs: Databases, name: str) -> VerificationResult:
    """Verify one copied table between the job's databases (raises VerificationFailed)."""
    table = dbs.table(name)
    with dbs.source.connect() as conn:
        spec = target_table(conn, dbs.target, table)
    return verify_table(dbs.source, dbs.target, table, spec)


# The two targets with a bulk path of their own (LOAD DATA, COPY); the source is MariaDB.
BULK_TARGETS = [
    pytest.param("mysql", id="mariadb"),
    pytest.param("postgres", marks=pytest.mark.postgres, id="postgres"),
]


@dataclass(frozen=True)
class SyncKit:
    """What a copy test needs, as the `sync` fixture gives it.

    `target(kind)` makes an empty target ("mysql", "postgres" or "sqlite"),
    `job(source, target, **options)` builds a validated job, `run(job, table, reporter=None)`
    copies one table and returns its TaskUnit, and `reporter` is the in-memory reporter class
    for tests to build with their own stop points.
    """

    target: Callable[[str], URL]
    job = staticmethod(make_job)
    run = staticmethod(run_unit)
    reporter = MemoryReporter


def fetch(url: URL, sql: str) -> list[tuple[Any, ...]]:
    """All rows of one query on `url`, through a throwaway engine."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        found = [tuple(r) for r in conn.execute(sa.text(sql)).all()]
    engine.dispose()
    return found


def execute(url: URL, *statements: str, **params: Any) -> None:
    """Run statements on `url` in one transaction of a throwaway engine."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        for sql in statements:
            conn.execute(sa.text(sql), params)
    engine.dispose()


# Each target with each write path it has: the bulk text path (LOAD DATA to MariaDB,
# source-formatted COPY text to PostgreSQL) and the typed path every refused batch
# falls back to; SQLite has only the latter. For `parametrize(("kind", "path"), PATHS)`.
PATHS = [
    pytest.param(kind, path, marks=param.marks, id=f"{param.id}-{path}")
    for param in TARGETS
    for kind in param.values
    for path in (("bulk", "typed") if kind != "sqlite" else ("typed",))
]


class _Refused(BulkState):
    """A bulk path the target refuses from the start: every batch goes typed."""

    def __init__(self, enabled: bool) -> None:
        super().__init__(False)


def use_path(monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    """Make the copies of a test take `path` ("bulk" as the engine chooses, or "typed")."""
    if path == "typed":
        monkeypatch.setattr(rangecopy, "BulkState", _Refused)


def columns(url: URL, table: str) -> list[str]:
    """The column names of `table` on `url`, in order, from the server's catalog."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        return [c["name"] for c in sa.inspect(engine).get_columns(table)]
    finally:
        engine.dispose()


def sqlite_keys_hold(url: URL) -> bool:
    """Whether SQLite's own check, with foreign keys on, finds no row breaking one."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA foreign_keys = ON")
            return conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
    finally:
        engine.dispose()
