"""From a job file to a sync task and back: create, run and resume table-copy tasks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datatrace_tasks.exceptions import ConfigError, SchemaIncompatible, TableNotFound
from datatrace_tasks.live.progress import ProgressMonitor
from datatrace_tasks.orchestration.manager import TaskManager
from datatrace_tasks.state.units import UnitStatus
from datatrace_tasks.sync import Job, job_from_dict, load_job, make_process_fn, plan_job


@dataclass(frozen=True)
class RunOutcome:
    """How a run of a sync task ended."""

    task_id: str
    completed_now: int
    units: int
    completed: int
    failed: int
    unfinished: int

    @property
    def ok(self) -> bool:
        """Every unit of the task completed (and so was verified)."""
        return self.completed == self.units


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
        "job": _masked(job),
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


def job_for_task(manager: TaskManager, task_id: str) -> Job:
    """The job a task was created from: re-read from its file (for its secrets), or rebuilt.

    Raises:
        ConfigError: the job file is gone and the stored job had a password in its URL.
    """
    task = manager.store.get_task(task_id)
    spec = task.spec or {}
    path = spec.get("job_path")
    if path and Path(path).exists():
        return load_job(path)
    stored = dict(spec.get("job") or {})
    if not stored or "***" in str(stored.get("source")) + str(stored.get("target")):
        where = f"job file {path!r}" if path else "no job file"
        raise ConfigError(f"cannot resume task {task_id!r}: {where} to read its database URLs from")
    return job_from_dict(stored, where=f"task {task_id}")


def run_task(
    manager: TaskManager,
    task_id: str,
    job: Job,
    *,
    progress_monitor: ProgressMonitor | None = None,
) -> RunOutcome:
    """Run (or resume) a task's unfinished units with the copy engine."""
    done_now = manager.execute_auto_mode(
        task_id,
        job.concurrency,
        make_process_fn(job),
        progress_monitor,
        error_strategy=job.error_strategy,
        retries=job.retries,
    )
    units = manager.store.load_units(task_id)
    completed = sum(u.status is UnitStatus.COMPLETED for u in units)
    failed = sum(u.status is UnitStatus.FAILED for u in units)
    return RunOutcome(
        task_id=task_id,
        completed_now=done_now,
        units=len(units),
        completed=completed,
        failed=failed,
        unfinished=len(units) - completed - failed,
    )


def _masked(job: Job) -> dict[str, Any]:
    data = job.model_dump(mode="json")
    data["source"] = job.masked_source
    data["target"] = job.masked_target
    return data


def start_or_resume(
    manager: TaskManager, *, job_path: str | Path | None = None, task_id: str | None = None
) -> RunOutcome:
    """Run a job file as a new task, or resume an existing task; exactly one must be given.

    Raises:
        ConfigError: neither or both given.
        JobFileInvalid: the job file is missing or malformed (nothing is written).
        TaskNotFound: no such task.
    """
    if (job_path is None) == (task_id is None):
        raise ConfigError("give exactly one of job_path (a new run) or task_id (a resume)")
    if task_id is not None:
        job = job_for_task(manager, task_id)
    else:
        assert job_path is not None
        job = load_job(job_path)
        task_id = create_task_from_job(manager, job, job_path=job_path)
    return run_task(manager, task_id, job)
