"""The deployment flow in-process: names, artifacts, final states, bad input, cancellation."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterName,
    FlowRunFilterParentFlowRunId,
    TaskRunFilter,
    TaskRunFilterFlowRunId,
)
from prefect.states import Cancelling

from datatrace_tasks.orchestration.artifacts import artifact_key
from datatrace_tasks.orchestration.manager import TaskManager
from datatrace_tasks.state.units import UnitStatus
from flows.sync import sync_job
from tests.orchestration.conftest import count_rows, write_job

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _artifact(key: str) -> Any:
    with get_client(sync_client=True) as client:
        (latest,) = client.read_latest_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
        return latest


def _child_runs(parent_flow_run_id: UUID) -> list[Any]:
    with get_client(sync_client=True) as client:
        return list(
            client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent_flow_run_id])
                )
            )
        )


def run_pausing_at_once(manager: TaskManager, prefix: str, units: list[str]) -> tuple[str, str]:
    """Create a task named `prefix-<random>` over `units` and run it in auto mode, one at a
    time, with a process function that pauses the task during the first unit (after 5 of 10
    records, with a checkpoint); returns (task name, task id)."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    task_id = manager.create_task(name, units)

    def pause_at_once(unit: Any, reporter: Any) -> None:
        reporter.set_total(10)
        manager.request_pause(task_id)
        reporter.report(5, checkpoint={"at": 5})

    manager.execute_auto_mode(task_id, 1, pause_at_once)
    return name, task_id


class TestDeploymentFlow:
    def test_completed_run_names_artifacts_and_state(
        self, tmp_path: Path, manager: TaskManager, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A good job: Completed, runs named after task and units, progress 100, unit table."""
        monkeypatch.setenv("DATATRACE_DATABASE_URL", manager.store.url)
        job = write_job(tmp_path, {"alpha": 500, "beta": 1_200}, name="flow-named-job")
        state = sync_job(job_path=str(job), return_state=True)
        assert state.is_completed(), state.message
        data = state.result()
        task_id = data["task_id"]
        assert data["completed"] == data["units"] == 2
        units = manager.store.load_units(task_id)
        assert {u.status for u in units} == {UnitStatus.COMPLETED}
        assert count_rows(f"sqlite:///{tmp_path / 'dst.db'}", "beta") == 1_200

        flow_run_id = state.state_details.flow_run_id
        assert flow_run_id is not None
        with get_client(sync_client=True) as client:
            outer = client.read_flow_run(flow_run_id)
            (inner,) = _child_runs(flow_run_id)
            unit_runs = client.read_task_runs(
                task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[inner.id]))
            )
        assert outer.name == inner.name == "flow-named-job"
        assert inner.state is not None and inner.state.is_completed()
        assert sorted(r.name for r in unit_runs) == ["alpha", "beta"]

        key = artifact_key("flow-named-job", task_id)
        assert float(_artifact(key).data) == 100.0
        table = _artifact(key + "-units").data
        assert "alpha" in table and "completed" in table and "seconds" in table

    def test_missing_job_file_fails_at_once_writing_nothing(
        self, tmp_path: Path, manager: TaskManager, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A job_path that does not exist: Failed naming the file, no task in the store."""
        monkeypatch.setenv("DATATRACE_DATABASE_URL", manager.store.url)
        missing = tmp_path / "nope.yaml"
        state = sync_job(job_path=str(missing), return_state=True)
        assert state.is_failed()
        assert "nope.yaml" in (state.message or "")
        assert manager.store.list_tasks() == []

    def test_unknown_task_fails_at_once_writing_nothing(
        self, manager: TaskManager, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A task_id the store does not know: Failed saying so, nothing written."""
        monkeypatch.setenv("DATATRACE_DATABASE_URL", manager.store.url)
        state = sync_job(task_id="no-such-task", return_state=True)
        assert state.is_failed()
        assert "no-such-task" in (state.message or "") and "not found" in (state.message or "")
        assert manager.store.list_tasks() == []

    def test_paused_task_ends_in_a_paused_state(self, manager: TaskManager) -> None:
        """A pause ends the flow run in a state named Paused, with the counts and the task id."""
        name, task_id = run_pausing_at_once(manager, "pausing", ["a", "b"])
        task = manager.store.get_task(task_id)
        assert task.status == "paused"
        assert "resume with task_id=" + task_id in task.message
        with get_client(sync_client=True) as client:
            (run,) = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name]))
            )
        assert run.state is not None and run.state.name == "Paused"
        assert run.state.is_cancelled() and task_id in (run.state.message or "")

    def test_a_paused_unit_is_paused_in_prefect_too(self, manager: TaskManager) -> None:
        """Prefect's own task run of a paused unit ends Paused (cancelled), never Failed,
        agreeing with the store; the unit not started stays pending."""
        name, task_id = run_pausing_at_once(manager, "pausing-unit", ["first", "second"])
        statuses = {u.id: u.status for u in manager.store.load_units(task_id)}
        assert statuses == {"first": UnitStatus.PAUSED, "second": UnitStatus.PENDING}
        with get_client(sync_client=True) as client:
            (run,) = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name]))
            )
            deadline = time.monotonic() + 30  # the ephemeral server records task runs late
            while True:
                by_run = TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[run.id]))
                task_runs = {t.name: t for t in client.read_task_runs(task_run_filter=by_run)}
                done = [t for t in task_runs.values() if t.state is not None and t.state.is_final()]
                if len(done) == 2 or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        for unit in ("first", "second"):
            state = task_runs[unit].state
            assert state is not None and state.name == "Paused", (unit, state)
            assert state.is_cancelled() and not state.is_failed()


class TestCancel:
    def test_cancel_from_the_api_pauses_then_resume_completes(
        self, tmp_path: Path, manager: TaskManager, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Cancelling the flow run mid-copy pauses the units; a resume copies the rest exactly."""
        monkeypatch.setenv("DATATRACE_DATABASE_URL", manager.store.url)
        rows = {"a_slow": 3_000, "b_slow": 3_000, "c_later": 400}
        job = write_job(
            tmp_path, rows, name="cancel-me", batch_size=100, throttle_rows_per_second=1_000
        )
        states: list[Any] = []
        runner = threading.Thread(
            target=lambda: states.append(sync_job(job_path=str(job), return_state=True))
        )
        runner.start()
        deadline = time.monotonic() + 60
        task_id = None
        while time.monotonic() < deadline:
            tasks = manager.store.list_tasks()
            if tasks and any(
                u.processed_records > 0 for u in manager.store.load_units(tasks[0].id)
            ):
                task_id = tasks[0].id
                break
            time.sleep(0.1)
        assert task_id is not None, "the job never started copying"
        with get_client(sync_client=True) as client:
            (outer,) = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    id=FlowRunFilterId(any_=[_flow_run_of(client, "datatrace-job")])
                )
            )
            client.set_flow_run_state(outer.id, Cancelling(), force=True)
        runner.join(timeout=90)
        assert not runner.is_alive()
        (state,) = states
        assert state.is_cancelled(), state
        assert f"task_id={task_id}" in (state.message or "")
        units = {u.id: u for u in manager.store.load_units(task_id)}
        assert units["a_slow"].status is UnitStatus.PAUSED
        assert units["a_slow"].checkpoint is not None
        assert 0 < units["a_slow"].processed_records < 3_000
        assert units["c_later"].status is UnitStatus.PENDING
        assert manager.store.get_task(task_id).status == "paused"

        resumed = sync_job(task_id=task_id, return_state=True)
        assert resumed.is_completed(), resumed.message
        target = f"sqlite:///{tmp_path / 'dst.db'}"
        for table, n in rows.items():
            assert count_rows(target, table) == n
            row = manager.store.unit_row(task_id, table)
            assert row["status"] == "completed" and row["verification"]["ok"] is True


def _flow_run_of(client: Any, flow_name: str) -> UUID:
    """The id of the running flow run of the named flow."""
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    runs = client.read_flow_runs(
        flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING]))
        ),
    )
    assert len(runs) == 1, runs
    return runs[0].id  # type: ignore[no-any-return]
