"""Resume and retry through a Prefect deployment instead of the side-app process."""

from __future__ import annotations

import asyncio
from uuid import UUID

import httpx
import pytest

from datatrace_tasks.orchestration.manager import TaskManager
from datatrace_tasks.settings import ApiSettings
from datatrace_tasks.state.units import UnitStatus
from tests.api.helpers import Serve

pytestmark = pytest.mark.usefixtures("prefect_harness")


async def _deployment(flow_name: str, name: str) -> UUID:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        flow_id = await client.create_flow_from_name(flow_name)
        return await client.create_deployment(
            flow_id=flow_id, name=name, entrypoint="flows/sync.py:sync_job"
        )


async def _runs_of(deployment_id: UUID) -> list[dict[str, object]]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    async with get_client() as client:
        runs = await client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
        )
    return [dict(r.parameters) for r in runs]


def test_resume_and_retry_trigger_the_deployment(
    serve: Serve, store_url: str, fast_manager: TaskManager
) -> None:
    """With a deployment configured, resume/retry schedule its flow run with the task id."""
    deployment_id = asyncio.run(_deployment("datatrace-job", "sync-job-trigger-test"))
    task_id = fast_manager.create_task("t", ["a", "b"])
    fast_manager.load_task_units_from_db(task_id)
    fast_manager.fail_unit_with_sync(task_id, "b", "boom")
    settings = ApiSettings(deployment="datatrace-job/sync-job-trigger-test")
    app = serve(store_url, settings=settings)

    resumed = httpx.post(f"{app.base_url}/api/tasks/{task_id}/resume", timeout=30)
    assert resumed.status_code == 202, resumed.text
    assert "sync-job-trigger-test" in resumed.json()["detail"]
    retried = httpx.post(f"{app.base_url}/api/tasks/{task_id}/retry-failed", timeout=30)
    assert retried.status_code == 202, retried.text

    mine = [p for p in _runs_of_task(deployment_id) if p.get("task_id") == task_id]
    assert mine == [{"task_id": task_id}] * 2
    units = {u.id: u.status for u in fast_manager.store.load_units(task_id)}
    assert units["b"] is UnitStatus.PENDING  # retry made the failed unit runnable again


def _runs_of_task(deployment_id: UUID) -> list[dict[str, object]]:
    return asyncio.run(_runs_of(deployment_id))


def test_unknown_deployment_is_a_clear_error(
    serve: Serve, store_url: str, fast_manager: TaskManager
) -> None:
    """A misconfigured deployment name answers 422 naming it; nothing changes."""
    task_id = fast_manager.create_task("t", ["a"])
    app = serve(store_url, settings=ApiSettings(deployment="datatrace-job/no-such-deployment"))
    response = httpx.post(f"{app.base_url}/api/tasks/{task_id}/resume", timeout=30)
    assert response.status_code == 422, response.text
    assert "no-such-deployment" in response.json()["detail"]
    assert {u.status for u in fast_manager.store.load_units(task_id)} == {UnitStatus.PENDING}
