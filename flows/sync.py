"""The deployment entrypoint: run a job file as a new sync task, or resume a task."""

from __future__ import annotations

from typing import Any

from prefect import State, flow

from datatrace_tasks.orchestration.deployment import run_sync_job


@flow(name="datatrace-job", log_prints=True, persist_result=False)
def sync_job(
    job_path: str | None = None, task_id: str | None = None, dask_address: str | None = None
) -> State[Any]:
    """Copy the tables of `job_path` (a new sync task), or resume `task_id`.

    Each table runs as a task run named after it, in a `datatrace-sync` subflow named
    after the sync task, at most the job's `concurrency` at once (and at most each
    database's limit across jobs). With `dask_address` the units run on that Dask
    cluster. The state store records every unit; cancelling this run pauses them.
    """
    return run_sync_job(job_path=job_path, task_id=task_id, dask_address=dask_address)
