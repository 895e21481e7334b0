"""The life of one run of a sync task: start, resume, retry failed units, pause, outcome.

Every way in (the `datatrace` command, the deployment flow, the side-app) goes
through these functions, so a run is started, refused, paused and counted the
same way everywhere:

- a job file becomes a sync task (`create_task_from_job`), an existing task gets
  its job back (`job_for_task`);
- `check_can_run` refuses a task a live runner holds (the lease rule of
  `SyncTask.lease_is_live`, the only liveness rule) or one with nothing to run;
- `run_task` runs the unfinished units and returns the `RunOutcome`;
- `pause_task` raises the task's pause flag, which every runner reads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from datatrace_tasks.exceptions import (
    ConfigError,
    SchemaIncompatible,
    TableNotFound,
    TaskAlreadyRunning,
    TaskStateConflict,
)
from datatrace_tasks.live.progress import ProgressMonitor
from datatrace_tasks.orchestration.manager import TaskManager
from datatrace_tasks.orchestration.scaleout import JobProcessFn
from datatrace_tasks.settings import DataTraceSettings
from datatrace_tasks.state.outcome import RunOutcome, outcome
from datatrace_tasks.state.store import Store
from datatrace_tasks.state.units import TaskStatus, TaskUnit, UnitStatus
from datatrace_tasks.sync import Job, job_from_dict, load_job, plan_job
from datatrace_tasks.sync.finish import add_foreign_keys, drop_foreign_keys


def create_task_from_job(manager: TaskManager, job: Job, *, job_path: str | Path | None) -> str:
    """Plan the job and create its sync task, one unit per table; nothing else is written.

    Raises:
        SchemaIncompatible: the plan refuses a table (the message lists why).
        TableNotFound: the job names a table the source does not have, or selects none.
    """
    plan = plan_job(job)
    if not plan.units and not plan.refused:
        raise TableNotFound(
            f"the job selects no table of the source (tables {job.tables}, include "
            f"{job.include}, exclude {job.exclude}); nothing to copy"
        )
    if plan.refused:
        reasons = "; ".join(f"{u.table}: {u.refusal}" for u in plan.refused)
        raise SchemaIncompatible(f"the job cannot run, {len(plan.refused)} refused: {reasons}")
    spec: dict[str, Any] = {
        "job_path": str(Path(job_path).resolve()) if job_path else None,
        "job": job.masked_dict,
    }
    return manager.create_task(
        job.name,
        [(u.table, u.table) for u in plan.units],
        concurrency=job.concurrency,
        error_strategy=job.error_strategy,
        source=job.source.get_secret_value(),
        target=job.target.get_secret_value(),
        spec=spec,
        totals={u.table: u.estimated_rows for u in plan.units},
    )


def job_for_task(store: Store, task_id: str) -> Job:
    """The job a task was created from: re-read from its file (for its secrets), or rebuilt.

    Raises:
        TaskNotFound: no such task.
        ConfigError: the job file is gone and the stored job had a password in its URL.
    """
    spec = store.get_task(task_id).spec or {}
    path = spec.get("job_path")
    if path and Path(path).exists():
        return load_job(path)
    stored = dict(spec.get("job") or {})
    if not stored or "***" in str(stored.get("source")) + str(stored.get("target")):
        where = f"job file {path!r}" if path else "no job file"
        raise ConfigError(f"cannot resume task {task_id!r}: {where} to read its database URLs from")
    return job_from_dict(stored, where=f"task {task_id}")


def start(
    manager: TaskManager, *, job_path: str | Path | None = None, task_id: str | None = None
) -> tuple[str, Job]:
    """A new task from a job file, or an existing task to resume: its id and its job.

    The job file is read before anything is written, so a bad file writes nothing.

    Raises:
        ConfigError: neither or both given.
        JobFileInvalid: the job file is missing or malformed.
        TaskNotFound: no such task.
    """
    if (job_path is None) == (task_id is None):
        raise ConfigError("give exactly one of job_path (a new run) or task_id (a resume)")
    if task_id is not None:
        return task_id, job_for_task(manager.store, task_id)
    assert job_path is not None
    job = load_job(job_path)
    return create_task_from_job(manager, job, job_path=job_path), job


def run_task(
    manager: TaskManager,
    task_id: str,
    job: Job,
    *,
    progress_monitor: ProgressMonitor | None = None,
) -> RunOutcome:
    """Run (or resume) a task's unfinished units with the copy engine.

    Raises:
        TaskAlreadyRunning: a live runner holds the task.
    """
    # Sent to another process (Dask), the work carries the job file, not the secrets.
    job_path = (manager.store.get_task(task_id).spec or {}).get("job_path")
    process = JobProcessFn(job, job_path=job_path)
    drop_foreign_keys(job)  # PostgreSQL checks them always: added back at the end
    try:
        done_now = manager.execute_auto_mode(
            task_id,
            job.concurrency,
            process,
            progress_monitor,
            error_strategy=job.error_strategy,
            retries=job.retries,
        )
    finally:
        process.close()  # the run's connections go with it
    result = outcome(manager.store, task_id, completed_now=done_now)
    if not result.ok:
        return result
    # Every table is in: the foreign keys between them can be added now (finish.py).
    keys = add_foreign_keys(job)
    return dataclasses.replace(result, notes=(*keys.built, *keys.not_built))


def check_can_run(store: Store, task_id: str, *, retry_failed: bool) -> tuple[list[TaskUnit], int]:
    """Refuse a run that cannot start; returns the units the run would take, of how many.

    Raises:
        TaskNotFound: no such task.
        TaskAlreadyRunning: a live runner holds the task.
        TaskStateConflict: every unit completed, or (`retry_failed`) none failed.
    """
    task = store.get_task(task_id)
    if task.lease_is_live(DataTraceSettings().lease_seconds):
        assert task.heartbeat_at is not None
        raise TaskAlreadyRunning(
            f"task {task.id!r} is running in {task.owner} (last heartbeat "
            f"{task.heartbeat_at:%H:%M:%S} UTC); pause it first"
        )
    units = store.load_units(task_id)
    failed = [u for u in units if u.status is UnitStatus.FAILED]
    if retry_failed and not failed:
        raise TaskStateConflict(f"task {task_id!r} has no failed unit to retry")
    todo = failed if retry_failed else [u for u in units if u.status is not UnitStatus.COMPLETED]
    if not todo:
        raise TaskStateConflict(f"every unit of task {task_id!r} is already completed")
    return todo, len(units)


def retry_failed_units(store: Store, task_id: str, failed: Sequence[TaskUnit]) -> None:
    """Make the failed units `check_can_run` found pending again (checkpoints kept)."""
    store.reset_units(task_id, [u.id for u in failed])


def pause_task(store: Store, task_id: str) -> None:
    """Ask a running task, in whatever process, to pause at its units' next batch.

    Raises:
        TaskNotFound: no such task.
        TaskStateConflict: the task is not running.
    """
    task = store.get_task(task_id)
    if task.status != TaskStatus.RUNNING:
        raise TaskStateConflict(f"task {task_id!r} is {task.status}, not running: nothing to pause")
    store.set_pause_requested(task_id, True)
