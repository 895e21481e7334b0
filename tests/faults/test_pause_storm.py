"""Twenty pauses at random moments of one job, each followed by a resume, in one process."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest

from datatrace_tasks.orchestration.lifecycle import create_task_from_job, run_task
from datatrace_tasks.orchestration.manager import TaskManager
from datatrace_tasks.state.store import Store
from datatrace_tasks.state.units import UnitStatus
from datatrace_tasks.sync import load_job
from tests.faults.conftest import FIGURES, SOURCE_ROWS, Schemas, table_state, write_job

pytestmark = [pytest.mark.mysql, pytest.mark.usefixtures("prefect_harness")]

PAUSES = 20
BATCH = 1000


def test_pause_resume_storm(schemas: Schemas, sqlite_store: Store, tmp_path: Path) -> None:
    """Each pause leaves at most one batch per unit to re-copy; the end result is exact."""
    rnd = random.Random(20)
    job = load_job(
        write_job(
            tmp_path / "job.yaml",
            schemas,
            concurrency=3,
            batch_size=BATCH,
            throttle_rows_per_second=1500,  # 20 pauses land before the end
            ranges=1,
        )
    )
    manager = TaskManager(sqlite_store, progress_interval=0.2)
    task_id = create_task_from_job(manager, job, job_path=None)
    pauses, worst = 0, 0
    for _ in range(PAUSES):
        runner = threading.Thread(target=run_task, args=(manager, task_id, job))
        runner.start()
        runner.join(timeout=rnd.uniform(0.8, 2.5))
        if not runner.is_alive():
            break  # the job finished before this pause
        manager.request_pause(task_id)
        runner.join(timeout=60)
        assert not runner.is_alive(), "a paused run did not stop"
        pauses += 1
        units = manager.store.load_units(task_id)
        assert all(u.status is not UnitStatus.RUNNING for u in units)
        counts = {name: count for name, (count, _) in table_state(schemas.target).items()}
        for unit in units:
            if unit.status is not UnitStatus.COMPLETED:
                ahead = counts.get(unit.id, 0) - unit.processed_records
                assert 0 <= ahead <= BATCH, f"{unit.id}: {ahead} rows beyond its checkpoint"
                worst = max(worst, ahead)
    # The last resume copies the rest at full speed: the throttle only spread the pauses.
    outcome = run_task(manager, task_id, job.model_copy(update={"throttle_rows_per_second": None}))
    assert outcome.ok, outcome
    assert table_state(schemas.target) == table_state(schemas.source)
    assert sum(u.processed_records for u in manager.store.load_units(task_id)) == SOURCE_ROWS
    assert pauses == PAUSES, f"only {pauses} pauses landed before the job finished"
    FIGURES.append(
        f"pause storm: {pauses} pauses and resumes; worst re-copy {worst} rows for one unit"
        f" (batch {BATCH}); final checksums equal"
    )
