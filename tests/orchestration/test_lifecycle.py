"""Job file to sync task to run, pause and resume, through the real manager and Prefect."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from datatrace_tasks.exceptions import ConfigError, JobFileInvalid, TableNotFound, TaskNotFound
from datatrace_tasks.orchestration.lifecycle import (
    create_task_from_job,
    job_for_task,
    run_task,
    start,
)
from datatrace_tasks.orchestration.manager import TaskManager
from datatrace_tasks.state.reporter import ProgressReporter
from datatrace_tasks.state.units import TaskUnit, UnitStatus
from datatrace_tasks.sync import job_from_dict, make_process_fn

pytestmark = pytest.mark.usefixtures("prefect_harness")


def make_source(path: Path, tables: Mapping[str, int]) -> str:
    """A SQLite source with `tables` of (id, label, amount) rows; returns its URL."""
    engine = sa.create_engine(f"sqlite:///{path}")
    md = sa.MetaData()
    for name, rows in tables.items():
        t = sa.Table(
            name,
            md,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("label", sa.String(40)),
            sa.Column("amount", sa.Numeric(10, 2)),
        )
        md.create_all(engine, tables=[t])
        with engine.begin() as conn:
            if rows:
                conn.execute(
                    sa.insert(t),
                    [{"id": i, "label": f"row {i} é", "amount": i / 4} for i in range(1, rows + 1)],
                )
    engine.dispose()
    return f"sqlite:///{path}"


def target_rows(url: str, table: str) -> list[tuple[Any, ...]]:
    """Every row of a target table, in key order."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        t = sa.Table(table, sa.MetaData(), autoload_with=conn)
        rows = [tuple(r) for r in conn.execute(sa.select(t).order_by(t.c.id))]
    engine.dispose()
    return rows


@pytest.fixture
def job_dict(tmp_path: Path) -> dict[str, Any]:
    """A job copying three SQLite tables into a SQLite target."""
    source = make_source(tmp_path / "src.db", {"small": 50, "big": 6_000, "empty": 0})
    return {
        "name": "unit-test-job",
        "source": source,
        "target": f"sqlite:///{tmp_path / 'dst.db'}",
        "concurrency": 2,
        "batch_size": 500,
    }


class TestRun:
    def test_run_copies_every_table(self, manager: TaskManager, job_dict: dict[str, Any]) -> None:
        """A run creates one unit per table and copies each exactly."""
        job = job_from_dict(job_dict)
        task_id = create_task_from_job(manager, job, job_path=None)
        outcome = run_task(manager, task_id, job)
        assert outcome.ok and outcome.units == 3
        units = {u.id: u for u in manager.store.load_units(task_id)}
        assert units["big"].processed_records == 6_000
        assert units["empty"].status is UnitStatus.COMPLETED
        assert len(target_rows(job_dict["target"], "big")) == 6_000
        assert manager.store.unit_row(task_id, "big")["verification"]["ok"] is True

    def test_pause_then_resume_copies_the_rest_once(
        self, manager: TaskManager, job_dict: dict[str, Any]
    ) -> None:
        """A paused unit resumes after its checkpoint: rest of the rows plus at most one batch."""
        job = job_from_dict({**job_dict, "concurrency": 1, "tables": ["big"]})
        task_id = create_task_from_job(manager, job, job_path=None)
        real = make_process_fn(job)
        reported: list[int] = []

        class PausingReporter:
            """Forwards to the manager's reporter; asks for a pause after 4 batches."""

            def __init__(self, inner: ProgressReporter) -> None:
                self.inner = inner

            def __getattr__(self, name: str) -> Any:
                return getattr(self.inner, name)

            def report(self, processed: int, checkpoint: Mapping[str, Any] | None = None) -> None:
                reported.append(processed)
                if len(reported) == 4:
                    manager.request_pause(task_id)
                self.inner.report(processed, checkpoint)

        def pausing(unit: TaskUnit, reporter: ProgressReporter) -> None:
            real(unit, PausingReporter(reporter))  # type: ignore[arg-type]

        manager.execute_auto_mode(task_id, 1, pausing)
        (unit,) = manager.store.load_units(task_id)
        assert unit.status is UnitStatus.PAUSED
        paused_at = unit.processed_records
        assert paused_at == 2_000 and unit.checkpoint is not None

        reported.clear()
        real_resumed = make_process_fn(job)

        def recording(unit: TaskUnit, reporter: ProgressReporter) -> None:
            class Recorder(PausingReporter):
                def report(self, processed: int, checkpoint: Any = None) -> None:
                    reported.append(processed)
                    self.inner.report(processed, checkpoint)

            real_resumed(unit, Recorder(reporter))  # type: ignore[arg-type]

        assert manager.execute_auto_mode(task_id, 1, recording) == 1
        rows = target_rows(job_dict["target"], "big")
        assert [r[0] for r in rows] == list(range(1, 6_001))  # no gap, no duplicate
        # The resumed run's first batch ends one batch after the checkpoint: nothing re-read
        # from row zero, at most one batch again.
        assert paused_at < reported[0] <= paused_at + job.batch_size
        assert reported[-1] == 6_000

    def test_resume_skips_completed_units(
        self, manager: TaskManager, job_dict: dict[str, Any]
    ) -> None:
        """After a failure, a resume runs only the failed unit."""
        job = job_from_dict(job_dict)
        task_id = create_task_from_job(manager, job, job_path=None)
        real = make_process_fn(job)

        def failing_big(unit: TaskUnit, reporter: ProgressReporter) -> None:
            if unit.id == "big":
                raise RuntimeError("disk full")
            real(unit, reporter)

        manager.execute_auto_mode(task_id, 2, failing_big)
        assert {u.id: u.status.value for u in manager.store.load_units(task_id)} == {
            "small": "completed",
            "big": "failed",
            "empty": "completed",
        }
        seen: list[str] = []

        def recording(unit: TaskUnit, reporter: ProgressReporter) -> None:
            seen.append(unit.id)
            real(unit, reporter)

        done = manager.execute_auto_mode(task_id, 2, recording)
        assert (seen, done) == (["big"], 1)

    def test_job_is_rebuilt_for_resume(
        self, manager: TaskManager, job_dict: dict[str, Any]
    ) -> None:
        """A task made from a job without passwords can be resumed from the store alone."""
        job = job_from_dict(job_dict)
        task_id = create_task_from_job(manager, job, job_path=None)
        again = job_for_task(manager.store, task_id)
        assert again.source_url == job.source_url and again.batch_size == 500


class TestBadInput:
    def test_unknown_table_writes_nothing(
        self, manager: TaskManager, job_dict: dict[str, Any]
    ) -> None:
        """A job naming a missing table is refused before any task is created."""
        job = job_from_dict({**job_dict, "tables": ["small", "nope`; DROP TABLE small"]})
        with pytest.raises(TableNotFound, match="nope"):
            create_task_from_job(manager, job, job_path=None)
        assert manager.store.list_tasks() == []

    def test_exactly_one_of_job_and_task(self, manager: TaskManager) -> None:
        """start needs a job file or a task id, not both, not neither."""
        for both_or_neither in ({}, {"job_path": "job.yaml", "task_id": "some-task"}):
            with pytest.raises(ConfigError, match="exactly one") as info:
                start(manager, **both_or_neither)
            assert type(info.value) is ConfigError  # not a subclass such as JobFileInvalid
        assert manager.store.list_tasks() == []

    def test_missing_job_file(self, manager: TaskManager, tmp_path: Path) -> None:
        """A job file that does not exist fails at once, naming it; nothing written."""
        with pytest.raises(JobFileInvalid, match="missing.yaml"):
            start(manager, job_path=tmp_path / "missing.yaml")
        assert manager.store.list_tasks() == []

    def test_unknown_task(self, manager: TaskManager) -> None:
        """Resuming an unknown task names it."""
        with pytest.raises(TaskNotFound, match="no-such-task"):
            start(manager, task_id="no-such-task")
