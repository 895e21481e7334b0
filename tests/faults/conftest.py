"""Fault tests: a real MariaDB source and target, the real CLI in child processes.

Every test here copies a generated schema of eight tables (single, string, date and
composite keys; 210,000 rows) from one scratch MariaDB database to another, breaks
the run in some way, resumes it and proves the target equals the source: same row
counts, same `CHECKSUM TABLE`, nothing lost, nothing doubled. The figures each test
measured are printed at the end of the session (and by `make soak`).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from datatrace_tasks.sync.ranges import auto_ranges
from tests.conftest import FIGURES, MYSQL_ENV, _scratch_database

__all__ = ["FIGURES"]  # the tests append their figures; tests/conftest.py prints them

DATATRACE = [sys.executable, "-m", "datatrace_tasks"]

# (table, DDL columns and key, rows, SELECT producing the rows from MariaDB's seq_1_to_N)
TABLES: list[tuple[str, str, int, str]] = [
    (
        "customers",
        "id INT PRIMARY KEY, name VARCHAR(40) NOT NULL, email VARCHAR(60),"
        " created DATETIME NOT NULL, balance DECIMAL(12,2)",
        40_000,
        "SELECT seq, CONCAT('customer ', seq, ' 北京😀'), IF(seq % 7 = 0, NULL,"
        " CONCAT('c', seq, '@example.org')), '2026-01-01' + INTERVAL seq MINUTE,"
        " seq * 1.25 FROM seq_1_to_{n}",
    ),
    (
        "orders",
        "id BIGINT UNSIGNED PRIMARY KEY, customer_id INT NOT NULL, amount DECIMAL(12,2), note TEXT",
        50_000,
        "SELECT seq * 3, seq % 40000 + 1, seq / 8, IF(seq % 3 = 0, NULL,"
        " REPEAT('tab\\tnewline\\nquote\\'', 2)) FROM seq_1_to_{n}",
    ),
    (
        "order_lines",
        "order_id INT NOT NULL, line INT NOT NULL, sku VARCHAR(20), qty SMALLINT,"
        " PRIMARY KEY (order_id, line)",
        60_000,
        "SELECT seq DIV 4 + 1, seq % 4 + 1, CONCAT('SKU-', seq % 997), seq % 9 FROM seq_0_to_{m}",
    ),
    (
        "event_log",
        "id INT PRIMARY KEY, payload VARCHAR(200), at TIMESTAMP(6) NULL",
        20_000,
        'SELECT seq, CONCAT(\'{{"n": \', seq, \', "s": "é ß 東京"}}\'),'
        " '2026-03-01 00:00:00' + INTERVAL seq SECOND FROM seq_1_to_{n}",
    ),
    (
        "tags",
        "name VARCHAR(40) PRIMARY KEY, weight DOUBLE",
        5_000,
        "SELECT CONCAT('tag-', LPAD(seq, 6, '0')), seq / 3 FROM seq_1_to_{n}",
    ),
    (
        "stock",
        "warehouse INT NOT NULL, sku VARCHAR(20) NOT NULL, qty INT, PRIMARY KEY (warehouse, sku)",
        15_000,
        "SELECT seq % 15 + 1, CONCAT('SKU-', LPAD(seq DIV 15, 5, '0')), seq FROM seq_0_to_{m}",
    ),
    (
        "daily_totals",
        "day DATE NOT NULL, region INT NOT NULL, total DECIMAL(14,2), PRIMARY KEY (day, region)",
        10_000,
        "SELECT '2020-01-01' + INTERVAL seq DIV 10 DAY, seq % 10, seq * 2.5 FROM seq_0_to_{m}",
    ),
    (
        "blobs",
        "id INT PRIMARY KEY, data VARBINARY(64), flag TINYINT(1)",
        10_000,
        "SELECT seq, UNHEX(SHA2(seq, 256)), seq % 2 FROM seq_1_to_{n}",
    ),
]
SOURCE_ROWS = sum(rows for _, _, rows, _ in TABLES)


@dataclass
class Schemas:
    """The source and target scratch databases of one test."""

    source: str
    target: str

    def engine(self, which: str) -> sa.Engine:
        """An engine on the source or the target."""
        return sa.create_engine(getattr(self, which), poolclass=sa.pool.NullPool)


def _database(url: str) -> str:
    return str(make_url(url).database)


@pytest.fixture(scope="session")
def filled_source() -> Iterator[str]:
    """A MariaDB source with the eight fault tables, shared by every fault test.

    Only ever read: every test copies it into a target of its own.
    """
    yield from _filled()


def _filled() -> Iterator[str]:
    for url in _scratch_database(MYSQL_ENV):
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        raw = engine.raw_connection()  # no parameters: `%` in the SQL stays as it is
        try:
            with raw.cursor() as cur:
                for name, columns, rows, select in TABLES:
                    cur.execute(f"CREATE TABLE `{name}` ({columns})")
                    cur.execute(f"INSERT INTO `{name}` " + select.format(n=rows, m=rows - 1))  # noqa: S608
            raw.commit()
        finally:
            raw.close()
        engine.dispose()
        yield url


@pytest.fixture
def schemas(filled_source: str) -> Iterator[Schemas]:
    """The shared source and an empty target database for this test."""
    for target in _scratch_database(MYSQL_ENV):
        yield Schemas(filled_source, target)


def table_state(url: str) -> dict[str, tuple[int, int | None]]:
    """(row count, CHECKSUM TABLE) of every fault table present at `url`."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    out: dict[str, tuple[int, int | None]] = {}
    with engine.connect() as conn:
        present = set(sa.inspect(conn).get_table_names())
        for name, *_ in TABLES:
            if name in present:
                count = conn.exec_driver_sql(f"SELECT COUNT(*) FROM `{name}`").scalar_one()  # noqa: S608
                checksum = conn.exec_driver_sql(f"CHECKSUM TABLE `{name}`").one()[1]
                out[name] = (int(count), checksum)
    engine.dispose()
    return out


def write_job(path: Path, schemas: Schemas, **options: Any) -> Path:
    """A job file copying every fault table from source to target."""
    settings = {"concurrency": 3, "batch_size": 2000, "retries": 2, **options}
    lines = [
        "name: faults",
        f"source: {schemas.source}",
        f"target: {schemas.target}",
        *(f"{key}: {value}" for key, value in settings.items()),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@dataclass
class Cli:
    """The `datatrace` command in a child process, with its own SQLite state store."""

    state: Path
    log_dir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    runs: int = 0
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DATATRACE_DATABASE_URL": f"sqlite:///{self.state}",
            "DATATRACE_LEASE_SECONDS": "3",
            "DATATRACE_PROGRESS_INTERVAL": "0.2",
            "COLUMNS": "200",
            **self.extra_env,
        }

    def start(self, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
        """Start `datatrace ARGS`; its output goes to a file (a pipe could block it)."""
        self.runs += 1
        out = self.log_dir / f"run-{self.runs}.log"
        proc = subprocess.Popen(
            [*DATATRACE, *args],
            env=self.env,
            stdout=out.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc, out

    def run(self, *args: str, timeout: float = 300) -> tuple[int, str]:
        """Run `datatrace ARGS` to the end; (exit code, output)."""
        proc, out = self.start(*args)
        try:
            code = proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
        return code, out.read_text(encoding="utf-8", errors="replace")

    def resume(self, task_id: str, *, timeout: float = 300) -> tuple[int, str]:
        """Resume a task, waiting out the lease of a runner that was killed."""
        deadline = time.monotonic() + 30
        while True:
            code, text = self.run("resume", task_id, timeout=timeout)
            if code != 2 or "already running" not in text or time.monotonic() > deadline:
                return code, text
            time.sleep(0.5)

    def units(self, task_id: str) -> dict[str, dict[str, Any]]:
        """The task's rows of `task_unit_runtimes`, by unit id."""
        with sqlite3.connect(f"file:{self.state}?mode=ro", uri=True, timeout=30) as conn:
            conn.row_factory = sqlite3.Row
            rows = conn.execute(
                "SELECT * FROM task_unit_runtimes WHERE task_id = ?", (task_id,)
            ).fetchall()
        return {r["unit_id"]: dict(r) for r in rows}

    def events_after(self, task_id: str, last_id: int) -> list[dict[str, Any]]:
        """The task's events above `last_id`."""
        with sqlite3.connect(f"file:{self.state}?mode=ro", uri=True, timeout=30) as conn:
            conn.row_factory = sqlite3.Row
            rows = conn.execute(
                "SELECT * FROM task_unit_events WHERE task_id = ? AND id > ? ORDER BY id",
                (task_id, last_id),
            ).fetchall()
        return [dict(r) for r in rows]

    def last_event_id(self) -> int:
        with sqlite3.connect(f"file:{self.state}?mode=ro", uri=True, timeout=30) as conn:
            return int(
                conn.execute("SELECT COALESCE(MAX(id), 0) FROM task_unit_events").fetchone()[0]
            )

    def start_run(self, job: Path) -> tuple[subprocess.Popen[bytes], Path, str]:
        """Start `datatrace run JOB` and wait for the task id it prints first:
        (the process, its output file, the task id)."""
        proc, out = self.start("run", str(job))
        return proc, out, wait_for_task_id(out, proc)

    def wait_for_progress(
        self, task_id: str, proc: subprocess.Popen[bytes], rows: int, timeout: float = 240
    ) -> int:
        """Wait until the store shows at least `rows` copied (or the run ended); returns rows."""
        deadline = time.monotonic() + timeout
        done = 0
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                done = sum(u["processed_records"] for u in self.units(task_id).values())
            except sqlite3.OperationalError:
                done = 0  # the store is being created or migrated
            if done >= rows:
                return done
            time.sleep(0.02)
        return done

    def rows_to_recopy(self, task_id: str, target: str) -> int:
        """Rows in the target beyond what each unfinished unit's checkpoint accounts for."""
        counts = {name: count for name, (count, _) in table_state(target).items()}
        return sum(
            counts.get(unit_id, 0) - unit["processed_records"]
            for unit_id, unit in self.units(task_id).items()
            if unit["status"] != "completed"
        )


@pytest.fixture
def cli(tmp_path: Path, prefect_api_url: str) -> Iterator[Cli]:
    """The CLI with a fresh state store for this test; its children die with the test.

    They use the session's Prefect server instead of each starting a temporary one.
    """
    runner = Cli(
        state=tmp_path / "state.db",
        log_dir=tmp_path,
        extra_env={"PREFECT_API_URL": prefect_api_url},
    )
    yield runner
    for proc in runner.procs:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait(timeout=30)


def wait_for_task_id(out: Path, proc: subprocess.Popen[bytes], timeout: float = 120) -> str:
    """The task id a `run` prints first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in out.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("sync task "):
                return line.split()[2]
        assert proc.poll() is None, out.read_text()
        time.sleep(0.05)
    raise AssertionError("the run never printed its task id")


def recopy_bound(units: dict[str, dict[str, Any]], job_options: dict[str, Any]) -> int:
    """Rows a resume may copy again: one batch per key range in flight at the kill.

    A unit left running (or paused) has as many ranges in flight as its checkpoint
    holds unfinished ones (or, with no checkpoint yet, as many as the engine would cut
    for its size).
    """
    batch = int(job_options.get("batch_size", 2000))
    in_flight = 0
    for unit in units.values():
        if unit["status"] not in ("running", "paused"):
            continue
        checkpoint = json.loads(unit["checkpoint"]) if unit["checkpoint"] else None
        if checkpoint and "ranges" in checkpoint:
            in_flight += sum(not r["done"] for r in checkpoint["ranges"])
        elif checkpoint:
            in_flight += 1
        else:
            wanted = job_options.get("ranges")
            in_flight += auto_ranges(int(unit["total_records"]), batch, wanted)
    return in_flight * batch
