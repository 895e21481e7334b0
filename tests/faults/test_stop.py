"""Stopping a run politely (SIGTERM, Ctrl-C) and starting one twice."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.faults.conftest import (
    FIGURES,
    SOURCE_ROWS,
    Cli,
    Schemas,
    recopy_bound,
    table_state,
    write_job,
)

pytestmark = pytest.mark.mysql


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_pauses_within_ten_seconds(
    signum: signal.Signals, schemas: Schemas, cli: Cli, tmp_path: Path
) -> None:
    """The first SIGTERM/SIGINT pauses every running unit at its checkpoint; resume is exact."""
    options = {"concurrency": 3, "batch_size": 2000}
    job = write_job(tmp_path / "job.yaml", schemas, **options)
    proc, out, task_id = cli.start_run(job)
    cli.wait_for_progress(task_id, proc, SOURCE_ROWS // 4)
    assert proc.poll() is None
    sent = time.monotonic()
    os.kill(proc.pid, signum)
    code = stopped = proc.wait(timeout=10)
    took = time.monotonic() - sent
    text = out.read_text(encoding="utf-8")
    assert code == 128 + signum, text
    assert f"datatrace resume {task_id}" in text
    units = cli.units(task_id)
    statuses = {row["status"] for row in units.values()}
    assert "running" not in statuses and "paused" in statuses, units
    for row in units.values():
        if row["status"] == "paused":
            assert row["checkpoint"], f"{row['unit_id']} paused without a checkpoint"
    recopy = cli.rows_to_recopy(task_id, schemas.target)

    code, text = cli.resume(task_id)
    assert code == 0, text
    assert table_state(schemas.target) == table_state(schemas.source)
    assert 0 <= recopy <= recopy_bound(units, options)
    FIGURES.append(
        f"{signal.Signals(signum).name}: exited {stopped} in {took:.1f} s with"
        f" {sum(s == 'paused' for s in (r['status'] for r in units.values()))} units paused;"
        f" resume exact, {recopy:,} rows re-copied"
    )


def test_second_runner_is_refused_then_stale_run_is_resumed(
    schemas: Schemas, cli: Cli, tmp_path: Path
) -> None:
    """While a run is alive a second one is refused, naming it; after a crash, resume works."""
    job = write_job(
        tmp_path / "job.yaml",
        schemas,
        concurrency=2,
        batch_size=1000,
        throttle_rows_per_second=1000,  # slow enough to still run while a second CLI starts
        ranges=1,
    )
    proc, _, task_id = cli.start_run(job)
    cli.wait_for_progress(task_id, proc, 10_000)
    assert proc.poll() is None

    code, text = cli.run("resume", task_id)
    assert code == 2, text
    assert "already running" in text and f":{proc.pid}:" in text, text
    assert proc.poll() is None, "the refused runner disturbed the live one"

    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    stale = {u for u, row in cli.units(task_id).items() if row["status"] == "running"}
    assert stale, "the crash should leave units marked running"

    write_job(job, schemas, concurrency=2, batch_size=1000)  # resume at full speed
    code, text = cli.resume(task_id)  # waits out the dead runner's lease
    assert code == 0, text
    assert table_state(schemas.target) == table_state(schemas.source)
    assert {row["status"] for row in cli.units(task_id).values()} == {"completed"}
