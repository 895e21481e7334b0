"""kill -9 at a random moment, then resume: the copy is exact, and little is redone.

CI runs 5 seeds; `make soak` runs 20 (`DATATRACE_SOAK_SEEDS`).
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.faults.conftest import (
    FIGURES,
    SOURCE_ROWS,
    TABLES,
    Cli,
    Schemas,
    recopy_bound,
    table_state,
    write_job,
)

SEEDS = int(os.environ.get("DATATRACE_SOAK_SEEDS", "5"))

pytestmark = pytest.mark.mysql


@pytest.mark.parametrize("seed", range(SEEDS))
def test_kill_9_then_resume_is_exact(seed: int, schemas: Schemas, cli: Cli, tmp_path: Path) -> None:
    """SIGKILL the runner mid-copy; resume; counts and checksums equal, nothing redone twice."""
    rnd = random.Random(seed)
    options: dict[str, Any] = {"concurrency": 3, "batch_size": 2000}
    kill_at = int(SOURCE_ROWS * rnd.uniform(0.05, 0.85))
    job = write_job(tmp_path / "job.yaml", schemas, **options)

    proc, _, task_id = cli.start_run(job)
    copied = cli.wait_for_progress(task_id, proc, kill_at)
    time.sleep(rnd.uniform(0, 0.5))  # not always just after a checkpoint write
    assert proc.poll() is None, "the run finished before the kill; lower the kill point"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)

    at_kill = cli.units(task_id)
    completed_before = {u for u, row in at_kill.items() if row["status"] == "completed"}
    stale = {u for u, row in at_kill.items() if row["status"] == "running"}
    recopy = cli.rows_to_recopy(task_id, schemas.target)
    last_event = cli.last_event_id()

    code, text = cli.resume(task_id)
    assert code == 0, text

    source, target = table_state(schemas.source), table_state(schemas.target)
    assert target == source  # row counts and CHECKSUM TABLE of all eight tables
    after = cli.units(task_id)
    assert {row["status"] for row in after.values()} == {"completed"}
    assert sum(row["processed_records"] for row in after.values()) == SOURCE_ROWS
    rerun = {
        e["unit_id"]
        for e in cli.events_after(task_id, last_event)
        if e["status"] == "running" and e["unit_id"] in completed_before
    }
    assert rerun == set(), "a completed unit ran again"
    assert 0 <= recopy <= recopy_bound(at_kill, options)
    FIGURES.append(
        f"kill -9 seed {seed}: killed at {copied:,}/{SOURCE_ROWS:,} rows;"
        f" {len(completed_before)}/{len(TABLES)} units completed, {len(stale)} left running;"
        f" resume: 0 lost, 0 duplicates, {recopy:,} rows re-copied"
        f" (bound {recopy_bound(at_kill, options):,})"
    )


def test_resume_after_kill_9_takes_over_at_once(schemas: Schemas, cli: Cli, tmp_path: Path) -> None:
    """With a lease of 5 minutes, `resume` right after a kill -9 of the runner on this host
    is not refused: the dead holder's task and unit leases are taken over at once."""
    cli.extra_env["DATATRACE_LEASE_SECONDS"] = "300"
    job = write_job(tmp_path / "job.yaml", schemas, concurrency=3, batch_size=2000)
    proc, _, task_id = cli.start_run(job)
    cli.wait_for_progress(task_id, proc, SOURCE_ROWS // 4)
    assert proc.poll() is None, "the run finished before the kill"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert any(row["status"] == "running" for row in cli.units(task_id).values())

    code, text = cli.run("resume", task_id)  # one try: a live lease would refuse it (exit 2)
    assert code == 0, text
    assert table_state(schemas.target) == table_state(schemas.source)
