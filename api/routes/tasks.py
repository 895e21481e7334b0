"""Sync tasks: list, detail with rollup, units, and the pause/resume/retry actions.

Routes are plain functions: the store is synchronous, so FastAPI runs them in its
thread pool and the event loop keeps serving the streams.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, status

from api.deps import BroadcasterDep, RunsDep, StoreDep, TaskIdDep
from api.schemas import ActionOut, ErrorOut, RollupOut, TaskDetailOut, TaskOut, UnitsOut
from datatrace_tasks.live.rollup import task_progress
from datatrace_tasks.orchestration import lifecycle
from datatrace_tasks.state.store import SyncTask

router = APIRouter(prefix="/api/tasks", tags=["tasks"])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "No sync task with that id."}
}
_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorOut, "description": "The task's state does not allow it."}
}


def _utc(moment: datetime) -> datetime:
    """The store keeps naive UTC times; the schema promises RFC 3339, offset included."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


_NO_RUN: dict[str, Any] = {
    "elapsed_seconds": None,
    "average_rows_per_second": None,
    "rate_history": [],
}
_VERIFIED = ("ok", "source_rows", "target_rows", "method", "scope", "verified_at")


def _verification(result: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the page shows of a unit's verification (its checksum and key stay in the store)."""
    if not result:
        return None
    return {name: result.get(name) for name in _VERIFIED}


def _task_out(task: SyncTask) -> dict[str, Any]:
    return {
        "id": task.id,
        "name": task.name,
        "status": task.status,
        "message": task.message,
        "pause_requested": task.pause_requested,
        "concurrency": task.concurrency,
        "error_strategy": task.error_strategy,
        "source": task.source,
        "target": task.target,
        "created_at": _utc(task.created_at),
        "updated_at": _utc(task.updated_at),
    }


@router.get("", response_model=list[TaskOut], summary="List sync tasks, newest first")
def list_tasks(store: StoreDep, limit: int = 100) -> list[dict[str, Any]]:
    """The newest sync tasks (at most `limit`, 1 to 1000)."""
    return [_task_out(t) for t in store.list_tasks(limit=max(1, min(limit, 1000)))]


@router.get(
    "/{task_id}",
    response_model=TaskDetailOut,
    responses=_NOT_FOUND,
    summary="One task with its rollup",
)
def get_task(task_id: TaskIdDep, store: StoreDep, runs: RunsDep) -> dict[str, Any]:
    """The task, units by status, rows processed of total, percentage, rows/s and ETA."""
    task = store.get_task(task_id)
    rollup = task_progress(store, task_id).rollup.to_dict()
    return {
        **_task_out(task),
        "rollup": RollupOut.model_validate(rollup),
        "running_here": runs.running_here(task_id),
    }


@router.get(
    "/{task_id}/units",
    response_model=UnitsOut,
    responses=_NOT_FOUND,
    summary="The units of a task",
)
def get_units(task_id: TaskIdDep, store: StoreDep, broadcaster: BroadcasterDep) -> dict[str, Any]:
    """Each unit's status, progress, speed, ETA and error, in the task's order."""
    # Read the watermark first: every event up to it is then reflected in the units below.
    last_event_id = broadcaster.last_event_id
    progress = task_progress(store, task_id)
    runs = broadcaster.unit_runs.runs(task_id)  # read from the log once, then kept current
    verified = {u.id: row["verification"] for u, row in store.load_units_and_rows(task_id)}
    return {
        "task_id": task_id,
        "last_event_id": last_event_id,
        "units": [
            {
                **progress.rates[u.id].to_dict(),
                "name": u.name,
                "status": u.status.value,
                "processed_records": u.processed_records,
                "total_records": u.total_records,
                "percentage": round(u.percentage, 2),
                "error_message": u.error_message,
                "attempts": u.attempts,
                "has_checkpoint": u.checkpoint is not None,
                **(runs[u.id].to_dict() if u.id in runs else _NO_RUN),
                "verification": _verification(verified.get(u.id)),
            }
            for u in progress.units
        ],
    }


@router.post(
    "/{task_id}/pause",
    response_model=ActionOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses={**_NOT_FOUND, **_CONFLICT},
    summary="Ask a running task to pause",
)
def pause_task(task_id: TaskIdDep, store: StoreDep) -> dict[str, Any]:
    """Raise the task's pause flag: its running units, in whatever process, stop at their
    next batch with their checkpoint saved; units not started yet do not start."""
    lifecycle.pause_task(store, task_id)
    return {
        "task_id": task_id,
        "action": "pause",
        "detail": "pause requested: running units stop at their next batch",
    }


# What starting a run can answer: accepted, or no such task, a conflict, a job gone.
_START: dict[str, Any] = {
    "response_model": ActionOut,
    "status_code": status.HTTP_202_ACCEPTED,
    "responses": {**_NOT_FOUND, **_CONFLICT, 422: {"model": ErrorOut}},
}


@router.post("/{task_id}/resume", summary="Run the task's unfinished units again", **_START)
def resume_task(task_id: TaskIdDep, runs: RunsDep) -> dict[str, Any]:
    """Start the task's paused, failed and pending units in this app, from their
    checkpoints; 409 when it is already running here or elsewhere."""
    detail = runs.start(task_id, retry_failed=False)
    return {"task_id": task_id, "action": "resume", "detail": detail}


@router.post(
    "/{task_id}/retry-failed", summary="Reset the failed units and run the task again", **_START
)
def retry_failed(task_id: TaskIdDep, runs: RunsDep) -> dict[str, Any]:
    """Make the failed units pending again (they keep their checkpoints) and run the task;
    409 when no unit failed or the task is running."""
    detail = runs.start(task_id, retry_failed=True)
    return {"task_id": task_id, "action": "retry-failed", "detail": detail}
