"""The target database dropping connections, and the state store going away, mid-copy."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests.conftest import MYSQL_ENV, _scratch_database
from tests.faults.conftest import (
    FIGURES,
    SOURCE_ROWS,
    Cli,
    Schemas,
    table_state,
    write_job,
)
from tests.faults.proxy import CuttableProxy

pytestmark = pytest.mark.mysql


def kill_connections_to(admin_url: str, database: str) -> int:
    """KILL every server connection using `database`; returns how many."""
    engine = sa.create_engine(admin_url, poolclass=sa.pool.NullPool)
    killed = 0
    with engine.connect() as conn:
        ids = conn.execute(
            sa.text(
                "SELECT ID FROM information_schema.PROCESSLIST"
                " WHERE DB = :db AND ID <> CONNECTION_ID()"
            ),
            {"db": database},
        ).scalars()
        for conn_id in list(ids):
            try:
                conn.exec_driver_sql(f"KILL CONNECTION {int(conn_id)}")
                killed += 1
            except sa.exc.DBAPIError:
                pass  # it ended by itself meanwhile
    engine.dispose()
    return killed


def completed_units_are_exact(cli: Cli, task_id: str, schemas: Schemas) -> None:
    """No unit is `completed` unless its table is complete and identical."""
    source, target = table_state(schemas.source), table_state(schemas.target)
    for unit_id, row in cli.units(task_id).items():
        if row["status"] == "completed":
            assert target.get(unit_id) == source[unit_id], f"{unit_id} completed but differs"


def test_target_connections_killed_mid_copy(schemas: Schemas, cli: Cli, tmp_path: Path) -> None:
    """KILL the target's connections three times: units retry and complete, or resume does."""
    job = write_job(tmp_path / "job.yaml", schemas, concurrency=3, batch_size=2000, retries=3)
    proc, out, task_id = cli.start_run(job)
    target_db = str(make_url(schemas.target).database)
    killed = 0
    for share in (0.15, 0.35, 0.55):
        cli.wait_for_progress(task_id, proc, int(SOURCE_ROWS * share))
        killed += kill_connections_to(schemas.source, target_db)
    code = proc.wait(timeout=300)
    text = out.read_text(encoding="utf-8")
    completed_units_are_exact(cli, task_id, schemas)
    first = {row["status"] for row in cli.units(task_id).values()}
    if code != 0:
        assert "running" not in first, text
        code, text = cli.resume(task_id)
    assert code == 0, text
    assert table_state(schemas.target) == table_state(schemas.source)
    FIGURES.append(
        f"target KILL: {killed} connections killed in 3 rounds; first run exit"
        f" {'0' if first == {'completed'} else 'non-zero'} ({sorted(first)}); final copy exact"
    )


@pytest.fixture
def state_via_proxy() -> tuple[str, CuttableProxy]:
    """A MariaDB state store reached through a proxy the test can cut."""
    for url in _scratch_database(MYSQL_ENV):
        parsed = make_url(url)
        proxy = CuttableProxy((parsed.host or "127.0.0.1", parsed.port or 3306))
        try:
            yield (
                parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False),
                proxy,
            )
        finally:
            proxy.close()


def test_state_store_unreachable_for_seconds(
    schemas: Schemas, cli: Cli, tmp_path: Path, state_via_proxy: tuple[str, CuttableProxy]
) -> None:
    """The state store drops out twice for 3 s: writes are retried, the job completes."""
    state_url, proxy = state_via_proxy
    job = write_job(tmp_path / "job.yaml", schemas, concurrency=3, batch_size=2000)
    cli.extra_env["DATATRACE_DATABASE_URL"] = state_url
    proc, out = cli.start("run", str(job))
    engine = sa.create_engine(make_url(state_url).set(port=3306), poolclass=sa.pool.NullPool)

    def copied() -> int:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    sa.text("SELECT COALESCE(SUM(processed_records), 0) FROM task_unit_runtimes")
                ).scalar_one()
            )

    for share in (0.2, 0.5):
        deadline = time.monotonic() + 240
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if copied() >= SOURCE_ROWS * share:
                    break
            except sa.exc.DBAPIError:
                pass  # not migrated yet
            time.sleep(0.05)
        proxy.cut(3)
    code = proc.wait(timeout=300)
    text = out.read_text(encoding="utf-8")
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT unit_id, status, processed_records FROM task_unit_runtimes")
        ).all()
    engine.dispose()
    assert code == 0, text
    assert {r.status for r in rows} == {"completed"} and len(rows) == 8
    assert sum(r.processed_records for r in rows) == SOURCE_ROWS
    assert table_state(schemas.target) == table_state(schemas.source)
    FIGURES.append(
        f"state store cut {proxy.cuts - 0}x for 3 s: job completed, 8/8 units completed,"
        f" {SOURCE_ROWS:,} rows, copy exact"
    )
