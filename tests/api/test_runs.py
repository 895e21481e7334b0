"""Pause a job running in another process from the API, then resume it in the app."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from datatrace_tasks.state.store import Store
from datatrace_tasks.state.units import UnitStatus
from tests.api.helpers import DEADLINE, Serve, wait_until

TABLES = {"alpha": 1500, "beta": 1200, "gamma": 900}

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


def _source(path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        for table, rows in TABLES.items():
            conn.exec_driver_sql(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, v VARCHAR(20))")
            conn.execute(
                sa.text(f"INSERT INTO {table} VALUES (:id, :v)"),  # noqa: S608 - fixed names
                [{"id": i, "v": f"row {i}"} for i in range(1, rows + 1)],
            )
    engine.dispose()


def _sqlite_job(tmp_path: Path, **settings: object) -> tuple[Path, str]:
    """A filled SQLite source, and a job file copying it with `settings` to an empty SQLite
    target in tmp_path: (the job file, the target URL)."""
    source, target = tmp_path / "source.db", tmp_path / "target.db"
    _source(source)
    job = tmp_path / "job.yaml"
    fields = {"source": f"sqlite:///{source}", "target": f"sqlite:///{target}", **settings}
    job.write_text(yaml.safe_dump(fields))
    return job, f"sqlite:///{target}"


def _count(url: str, table: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.exec_driver_sql(f"SELECT COUNT(*) FROM {table}").scalar_one())  # noqa: S608
    finally:
        engine.dispose()


class TestPauseAndResume:
    """The pause flag crosses processes; resume continues from the checkpoints."""

    def test_pause_other_process_then_resume_in_app(
        self, serve: Serve, store_url: str, store: Store, tmp_path: Path
    ) -> None:
        """A `datatrace run` in a subprocess stops at its next batch when paused through the
        API, its units end paused with checkpoints, and resume through the API completes it."""
        from prefect.settings import PREFECT_API_URL

        job, target = _sqlite_job(
            tmp_path,
            name="cross-process",
            concurrency=3,
            batch_size=50,
            retries=0,
            throttle_rows_per_second=300,
        )
        env = dict(os.environ, DATATRACE_DATABASE_URL=store_url, DATATRACE_PROGRESS_INTERVAL="0.1")
        env["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
        runner = subprocess.Popen(
            [str(Path(sys.executable).parent / "datatrace"), "run", str(job)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        live = serve(store_url, progress_interval=0.1)
        try:
            wait_until(lambda: bool(store.list_tasks()), "the job did not create its task")
            task_id = store.list_tasks()[0].id

            def copying() -> bool:
                # Every unit past its first batch: a unit paused before it starts can be left
                # `running` by the runner's hooks (reported separately), not what this tests.
                units = store.load_units(task_id)
                return store.get_task(task_id).status == "running" and all(
                    u.processed_records > 0 for u in units
                )

            wait_until(copying, "the job did not start copying")
            with live.client() as client:
                assert client.post(f"/api/tasks/{task_id}/pause").status_code == 202
                output, _ = runner.communicate(timeout=DEADLINE)
                assert runner.returncode == 1, output.decode(errors="replace")
                units = store.load_units(task_id)
                statuses = {u.status for u in units}
                assert statuses <= {UnitStatus.PAUSED, UnitStatus.COMPLETED}, output.decode()
                paused = [u for u in units if u.status is UnitStatus.PAUSED]
                assert paused, "every unit finished before the pause"
                assert all(u.checkpoint is not None for u in paused if u.processed_records)
                assert store.get_task(task_id).status == "paused"

                response = client.post(f"/api/tasks/{task_id}/resume")
                assert response.status_code == 202, response.text
                wait_until(
                    lambda: store.get_task(task_id).status == "completed",
                    "the resumed run did not complete",
                )
        finally:
            if runner.poll() is None:
                runner.kill()
                runner.wait()
        units = store.load_units(task_id)
        assert all(u.status is UnitStatus.COMPLETED for u in units)
        for table, rows in TABLES.items():
            assert _count(target, table) == rows


class TestRetryFailed:
    """POST retry-failed resets the failed units and runs them in the app."""

    def test_retry_failed_runs_only_failed_units(
        self, serve: Serve, store_url: str, store: Store, tmp_path: Path
    ) -> None:
        """The failed unit runs again to completion; a second start while it runs is a 409."""
        from datatrace_tasks.orchestration.lifecycle import create_task_from_job
        from datatrace_tasks.orchestration.manager import TaskManager
        from datatrace_tasks.sync import load_job

        job_path, target = _sqlite_job(
            tmp_path,
            name="retry",
            tables=["gamma"],
            batch_size=100,
            retries=0,
            throttle_rows_per_second=400,
        )
        manager = TaskManager(store, progress_interval=0.1)
        task_id = create_task_from_job(manager, load_job(job_path), job_path=job_path)
        manager.fail_unit_with_sync(task_id, "gamma", "OperationalError: connection lost")
        store.set_task_status(task_id, "failed", "0 of 1 units completed, 1 failed")
        live = serve(store_url, progress_interval=0.1)
        with live.client() as client:
            response = client.post(f"/api/tasks/{task_id}/retry-failed")
            assert response.status_code == 202, response.text
            assert "retrying 1 failed unit" in response.json()["detail"]
            again = client.post(f"/api/tasks/{task_id}/resume")
            assert again.status_code == 409
            assert "already running in this app" in again.json()["detail"]
            wait_until(
                lambda: store.get_task(task_id).status == "completed",
                "the retried unit did not complete",
            )
        (unit,) = store.load_units(task_id)
        assert unit.status is UnitStatus.COMPLETED
        assert unit.error_message == ""
        assert _count(target, "gamma") == TABLES["gamma"]
