"""Fixtures for the Prefect-native tests: job files, Prefect API reads, a MariaDB store."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from tests.conftest import MYSQL_ENV, _scratch_database
from tests.orchestration.test_lifecycle import make_source


def pytest_configure(config: pytest.Config) -> None:
    """Declare this folder's marker (the suite runs with --strict-markers)."""
    config.addinivalue_line(
        "markers",
        "prefect_server: starts a real `prefect server start` and a worker (about a minute); "
        "runs in CI, skip locally with -m 'not prefect_server' or DATATRACE_SKIP_SERVER_TESTS=1",
    )


def write_job(folder: Path, tables: Mapping[str, int], **options: Any) -> Path:
    """A SQLite-to-SQLite job file over a generated source; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    source = make_source(folder / "src.db", tables)
    job = {
        "name": options.pop("name", "prefect-test-job"),
        "source": source,
        "target": f"sqlite:///{folder / 'dst.db'}",
        "concurrency": 2,
        "batch_size": 200,
        "retries": 0,
        **options,
    }
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(job), encoding="utf-8")
    return path


def count_rows(url: str, table: str) -> int:
    """Rows of one table."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        n = conn.execute(sa.select(sa.func.count()).select_from(sa.table(table))).scalar_one()
    engine.dispose()
    return int(n)


@pytest.fixture
def mysql_store_url() -> Iterator[str]:
    """A scratch MariaDB database for a state store shared by several processes."""
    yield from _scratch_database(MYSQL_ENV)


@pytest.fixture
def shared_store_url(tmp_path: Path) -> Iterator[str]:
    """MariaDB when configured (as in CI), else a SQLite file: a store other processes reach."""
    if os.environ.get(MYSQL_ENV):
        yield from _scratch_database(MYSQL_ENV)
    else:
        yield f"sqlite:///{tmp_path / 'shared-state.db'}"


STAMP = datetime(2024, 5, 1)
"""When the first row of `events_source` was stamped (row i: STAMP + i seconds)."""


def events_source(path: Path, rows: int) -> tuple[str, sa.Table]:
    """A SQLite source with `events` (a DATETIME cursor `updated_at`), one second a row."""
    url = f"sqlite:///{path}"
    events = sa.Table(
        "events",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("v", sa.String(20)),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        events.create(conn)
        conn.execute(
            events.insert(),
            [
                {"id": i, "v": f"r{i}", "updated_at": STAMP + timedelta(seconds=i)}
                for i in range(1, rows + 1)
            ],
        )
    engine.dispose()
    return url, events
