"""The deployment entrypoint: run a job file as a new sync task, or resume a task."""

from __future__ import annotations

from typing import Any

from prefect import flow

from datatrace_tasks.jobs import start_or_resume
from datatrace_tasks.manager import TaskManager


@flow(name="datatrace-job", log_prints=True)
def sync_job(job_path: str | None = None, task_id: str | None = None) -> dict[str, Any]:
    """Copy the tables of `job_path` (a new sync task), or resume `task_id`.

    Each table runs as a mapped task run of a `datatrace-sync` subflow, at most the
    job's `concurrency` at once; the state store records every unit.
    """
    outcome = start_or_resume(TaskManager(), job_path=job_path, task_id=task_id)
    print(
        f"sync task {outcome.task_id}: {outcome.completed}/{outcome.units} units completed, "
        f"{outcome.failed} failed, {outcome.unfinished} unfinished"
    )
    if not outcome.ok:
        raise RuntimeError(
            f"sync task {outcome.task_id} did not complete: {outcome.failed} failed, "
            f"{outcome.unfinished} unfinished; run it again with task_id={outcome.task_id}"
        )
    return {"task_id": outcome.task_id, "units": outcome.units, "completed": outcome.completed}
