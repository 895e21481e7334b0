"""The body of the `datatrace-job` deployment flow: a job file or a task id, to a final state.

`flows/sync.py` only declares the flow; everything it does is here, so it can be
tested and reused without a deployment.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from typing import Any

from prefect import State

from datatrace_tasks.orchestration.flow import run_state
from datatrace_tasks.orchestration.lifecycle import run_task, start
from datatrace_tasks.orchestration.manager import TaskManager
from datatrace_tasks.orchestration.scaleout import dask_task_runner, use_task_runner
from datatrace_tasks.orchestration.stopping import flow_run_cancelled

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
    manager = manager if manager is not None else TaskManager()
    task_id, job = start(manager, job_path=job_path, task_id=task_id)
    name = manager.store.get_task(task_id).name
    _rename_flow_run(name)
    log.info("sync task %s (%s): running on %s", task_id, name, manager.store.masked_url)
    runner = use_task_runner(dask_task_runner(address=dask_address)) if dask_address else None
    with runner if runner is not None else nullcontext():
        result = run_task(manager, task_id, job)
    for note in result.notes:
        log.info("%s", note)
    _, state = run_state(result, cancelled=_cancelling(), about=f"sync task {task_id} ({name}): ")
    log.info(state.message)
    return state


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
    with get_client(sync_client=True) as client:
        return flow_run_cancelled(client, context.flow_run.id)
