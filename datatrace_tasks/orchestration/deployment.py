"""The body of the `datatrace-job` deployment flow: a job file or a task id, to a final state.

`flows/sync.py` only declares the flow; everything it does is here, so it can be
tested and reused without a deployment.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from prefect import State
from prefect.states import Cancelled, Completed, Failed

from datatrace_tasks.exceptions import ConfigError
from datatrace_tasks.orchestration.lifecycle import create_task_from_job, job_for_task
from datatrace_tasks.orchestration.manager import TaskManager
from datatrace_tasks.orchestration.scaleout import JobProcessFn, dask_task_runner, use_task_runner
from datatrace_tasks.state.units import UnitStatus
from datatrace_tasks.sync import load_job

log = logging.getLogger("datatrace")


def run_sync_job(
    *,
    job_path: str | None = None,
    task_id: str | None = None,
    dask_address: str | None = None,
    manager: TaskManager | None = None,
) -> State[Any]:
    """Run a job file as a new sync task, or resume a task, and say how it ended.

    Bad input fails before anything is written: a missing or invalid job file, an
    unknown task id, both or neither given, a database limit below 1.

    Args:
        job_path: a job file (relative paths start in the working directory, which the
            deployment's pull step sets to the project folder).
        task_id: an existing sync task to resume.
        dask_address: run the units on this Dask scheduler instead of in threads.
        manager: the TaskManager to use (default: one over `DATATRACE_DATABASE_URL`).

    Returns:
        Completed (data: task id and counts), Failed with counts, Cancelled (the run
        was cancelled: units paused at their checkpoints), or a Cancelled state named
        Paused (someone paused the task); every message names the task id to resume.

    Raises:
        ConfigError: neither or both of job_path and task_id.
        JobFileInvalid: the job file is missing or malformed.
        TaskNotFound: no such task.
    """
    if (job_path is None) == (task_id is None):
        raise ConfigError("give exactly one of job_path (a new run) or task_id (a resume)")
    if job_path is not None:
        job = load_job(job_path)  # before the store is even opened: a bad file writes nothing
    manager = manager if manager is not None else TaskManager()
    if task_id is not None:
        name = manager.store.get_task(task_id).name
        job = job_for_task(manager, task_id)
    else:
        assert job_path is not None
        task_id = create_task_from_job(manager, job, job_path=Path(job_path))
        name = job.name
    _rename_flow_run(name)
    log.info("sync task %s (%s): running on %s", task_id, name, manager.store.masked_url)
    runner = use_task_runner(dask_task_runner(address=dask_address)) if dask_address else None
    with runner if runner is not None else nullcontext():
        manager.execute_auto_mode(
            task_id,
            job.concurrency,
            JobProcessFn(job),
            error_strategy=job.error_strategy,
            retries=job.retries,
        )
    units = manager.store.load_units(task_id)
    completed = sum(u.status is UnitStatus.COMPLETED for u in units)
    failed = sum(u.status is UnitStatus.FAILED for u in units)
    unfinished = len(units) - completed - failed
    summary = (
        f"sync task {task_id} ({name}): {completed} of {len(units)} units completed, "
        f"{failed} failed, {unfinished} not finished"
    )
    log.info(summary)
    data = {"task_id": task_id, "units": len(units), "completed": completed, "failed": failed}
    if _cancelling():
        return Cancelled(message=f"cancelled: {summary}; run again with task_id={task_id}")
    if completed == len(units):
        return Completed(message=summary, data=data)
    if failed:
        return Failed(message=f"{summary}; run again with task_id={task_id}", data=data)
    return Cancelled(name="Paused", message=f"paused: {summary}; resume with task_id={task_id}")


def _rename_flow_run(name: str) -> None:
    """Name the current flow run after the sync task (the UI lists runs by name)."""
    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(context.flow_run.id, name=name)
    except Exception:
        log.exception("could not rename the flow run; it keeps its generated name")


def _cancelling() -> bool:
    """Whether someone cancelled the current flow run while it ran."""
    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return False
    try:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(context.flow_run.id).state
    except Exception:
        return False
    return state is not None and (state.is_cancelling() or state.is_cancelled())
