"""Scale-out: runners in several processes share one MariaDB store; units on Dask workers."""

from __future__ import annotations

import multiprocessing
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from datatrace_tasks.state.store import Store
from tests.orchestration.hammer import BATCHES, ROWS_PER_BATCH, hammer

RUNNERS = 4
UNITS = 24


@pytest.mark.mysql
class TestSharedStore:
    def test_four_processes_hammering_one_store(self, mysql_store_url: str) -> None:
        """Four runners race for the same units: each unit copied once, every count exact."""
        store = Store(mysql_store_url)
        unit_ids = [f"u{i:02d}" for i in range(UNITS)]
        task_id = store.create_task(name="hammer", units=[(u, u) for u in unit_ids])
        ctx = multiprocessing.get_context("spawn")
        barrier = ctx.Barrier(RUNNERS)
        out = ctx.Queue()
        procs = [
            ctx.Process(target=hammer, args=(mysql_store_url, task_id, unit_ids, barrier, out))
            for _ in range(RUNNERS)
        ]
        for p in procs:
            p.start()
        try:
            results = [out.get(timeout=120) for _ in procs]
        finally:
            for p in procs:
                p.join(timeout=30)
                if p.is_alive():
                    p.kill()
        claims = Counter(u for _, won, _ in results for u in won)
        assert sorted(claims) == unit_ids
        assert set(claims.values()) == {1}, "a unit was copied by two runners"
        assert sum(refused for _, _, refused in results) > 0  # they really raced

        units = store.load_units(task_id)
        assert all(u.status.value == "completed" for u in units)
        assert all(u.processed_records == BATCHES * ROWS_PER_BATCH for u in units)
        events = store.events_after(0, task_id=task_id, limit=10_000)
        progress = Counter(e.unit_id for e in events if e.kind == "progress")
        done = Counter(e.unit_id for e in events if e.status == "completed")
        assert progress == {u: BATCHES for u in unit_ids}
        assert done == {u: 1 for u in unit_ids}
        with store.engine.connect() as conn:
            holders = conn.execute(
                sa.text("SELECT COUNT(*) FROM task_unit_runtimes WHERE lease_owner IS NOT NULL")
            ).scalar_one()
        assert holders == 0
        store.dispose()


def _pid_file(folder: Path) -> Path:
    return folder / "pids.txt"


class PidRecordingCopy:
    """The job's real copy, noting in a file which process ran each unit (picklable)."""

    def __init__(self, inner: Any, folder: Path) -> None:
        self.inner = inner
        self.folder = folder

    def __call__(self, unit: Any, reporter: Any) -> None:
        with _pid_file(self.folder).open("a", encoding="utf-8") as f:
            f.write(f"{unit.id} {os.getpid()}\n")
        self.inner(unit, reporter)


@pytest.mark.usefixtures("prefect_harness")
class TestDask:
    def test_units_run_in_two_dask_worker_processes(
        self, tmp_path: Path, shared_store_url: str
    ) -> None:
        """A job on a LocalCluster of 2 worker processes: units spread, store and progress work."""
        pytest.importorskip("prefect_dask")
        import cloudpickle  # type: ignore[import-untyped]
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

        from datatrace_tasks.orchestration.artifacts import artifact_key
        from datatrace_tasks.orchestration.lifecycle import create_task_from_job
        from datatrace_tasks.orchestration.manager import TaskManager
        from datatrace_tasks.orchestration.scaleout import (
            JobProcessFn,
            dask_task_runner,
            use_task_runner,
        )
        from datatrace_tasks.sync import load_job
        from tests.orchestration.conftest import count_rows, write_job

        cloudpickle.register_pickle_by_value(__import__(__name__, fromlist=["_"]))
        tables = {f"t{i}": 1_500 for i in range(6)}
        job = load_job(write_job(tmp_path, tables, name="dask-job", concurrency=2, batch_size=100))
        manager = TaskManager(Store(shared_store_url), progress_interval=0.05)
        task_id = create_task_from_job(manager, job, job_path=None)
        with use_task_runner(dask_task_runner(n_workers=2)):
            manager.execute_auto_mode(
                task_id, 2, PidRecordingCopy(JobProcessFn(job), tmp_path), retries=0
            )
        units = manager.store.load_units(task_id)
        assert {u.status.value for u in units} == {"completed"}
        for table, n in tables.items():
            assert count_rows(f"sqlite:///{tmp_path / 'dst.db'}", table) == n
        pids = {line.split()[1] for line in _pid_file(tmp_path).read_text().splitlines()}
        assert len(pids) >= 2 and str(os.getpid()) not in pids
        events = manager.store.events_after(0, task_id=task_id, limit=10_000)
        assert {e.unit_id for e in events if e.kind == "progress"} == set(tables)
        with get_client(sync_client=True) as client:
            (artifact,) = client.read_latest_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(any_=[artifact_key("dask-job", task_id)])
                )
            )
        assert float(artifact.data) == 100.0
