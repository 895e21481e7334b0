"""The Prefect side of `execute_auto_mode`: one flow, one mapped task run per unit."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from prefect import State, flow, task
from prefect.artifacts import (
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.states import Completed, Failed
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import exponential_backoff

from datatrace_tasks.exceptions import DataTraceError, UnitPaused
from datatrace_tasks.hooks import state_exception, unit_hooks
from datatrace_tasks.lease import task_lease
from datatrace_tasks.units import UnitStatus, percentage

if TYPE_CHECKING:
    from datatrace_tasks.manager import TaskManager
    from datatrace_tasks.reporter import ProcessFn

log = logging.getLogger("datatrace")


def _retryable(_task: Any, _task_run: Any, state: Any) -> bool:
    """Retry unless the error says another attempt cannot help (or the unit was paused)."""
    exc = state_exception(state)
    if isinstance(exc, UnitPaused):
        return False
    if isinstance(exc, DataTraceError):
        return exc.transient
    return True


def run_units(
    manager: TaskManager,
    task_id: str,
    *,
    concurrency: int,
    process_fn: ProcessFn,
    error_strategy: str | None,
    retries: int,
    retry_delay_seconds: float,
) -> int:
    """Run the task's unfinished units as one Prefect flow; see `TaskManager.execute_auto_mode`."""
    from datatrace_tasks.manager import UnitReporter

    sync_task = manager.store.get_task(task_id)
    strategy = error_strategy or sync_task.error_strategy
    with task_lease(manager.store, task_id, lease_seconds=manager.lease_seconds):
        units = manager.load_task_units_from_db(task_id)
        todo = [u for u in units if u.status is not UnitStatus.COMPLETED]
        manager.clear_pause(task_id)
        if not todo:
            return 0
        names = {u.id: u.name for u in todo}

        def run_unit(unit_id: str, unit_name: str) -> int:
            if manager.pause_requested(task_id):
                raise UnitPaused(
                    f"unit {unit_name!r} not started: the task is pausing", started=False
                )
            current = next(u for u in manager.get_task_units(task_id) if u.id == unit_id)
            reporter = UnitReporter(manager, task_id, current)
            process_fn(current, reporter)
            return reporter.processed

        hooks: dict[str, Any] = unit_hooks(manager, task_id, strategy)
        unit_task = task(
            name="sync-unit",
            task_run_name="{unit_name}",
            retries=retries,
            retry_delay_seconds=exponential_backoff(retry_delay_seconds) if retries else 0,
            retry_condition_fn=_retryable,
            cache_policy=NO_CACHE,
            persist_result=False,
            on_running=hooks["on_running"],
            on_completion=hooks["on_completion"],
            on_failure=hooks["on_failure"],
        )(run_unit)

        @flow(
            name="datatrace-sync",
            flow_run_name=sync_task.name,
            task_runner=cast(Any, ThreadPoolTaskRunner(max_workers=concurrency)),
            persist_result=False,
            validate_parameters=False,
        )
        def sync_units() -> State[Any]:
            with _progress_artifact(manager, task_id, sync_task.name):
                futures = unit_task.map(unit_id=list(names), unit_name=list(names.values()))
                futures.wait()
                manager.flush_progress(task_id)
            _summary_artifact(manager, task_id, sync_task.name)
            return _final_state(manager, task_id)

        manager.store.set_task_status(task_id, "running", f"{len(todo)} units to run")
        # The flow heartbeat thread sleeps in 1 s steps and delays exit; our lease is the
        # liveness signal that matters here.
        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            sync_units(return_state=True)
        manager.flush_progress(task_id)
        after = {u.id: u for u in manager.load_task_units_from_db(task_id)}
        return sum(1 for unit_id in names if after[unit_id].status is UnitStatus.COMPLETED)


def _final_state(manager: TaskManager, task_id: str) -> State[Any]:
    """Tell the truth about the run: completed, failed with counts, or paused."""
    units = manager.store.load_units(task_id)
    counts = {s: sum(1 for u in units if u.status is s) for s in UnitStatus}
    done, failed = counts[UnitStatus.COMPLETED], counts[UnitStatus.FAILED]
    paused = counts[UnitStatus.PAUSED] + counts[UnitStatus.PENDING] + counts[UnitStatus.RUNNING]
    summary = f"{done} of {len(units)} units completed, {failed} failed, {paused} not finished"
    if failed:
        manager.store.set_task_status(task_id, "failed", summary)
        return Failed(message=summary)
    if paused:
        manager.store.set_task_status(task_id, "paused", summary)
        return Failed(message=f"paused: {summary}; resume to continue")
    manager.store.set_task_status(task_id, "completed", summary)
    return Completed(message=summary)


def artifact_key(name: str, task_id: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "task"
    return f"datatrace-{slug}-{task_id[:8]}"


def _task_percentage(manager: TaskManager, task_id: str) -> float:
    units = manager.get_task_units(task_id)
    total = sum(max(u.total_records, u.processed_records) for u in units)
    done = sum(u.processed_records for u in units)
    if total == 0:
        return 100.0 if all(u.status is UnitStatus.COMPLETED for u in units) else 0.0
    return round(percentage(done, total), 2)


@contextmanager
def _progress_artifact(manager: TaskManager, task_id: str, name: str) -> Iterator[None]:
    """A Prefect progress artifact for the task, updated on the store's throttle."""
    try:
        artifact_id: Any = create_progress_artifact(
            _task_percentage(manager, task_id),
            key=artifact_key(name, task_id),
            description=f"rows copied of sync task {name} ({task_id})",
        )
    except Exception:
        log.exception("could not create the progress artifact; the run goes on without it")
        yield
        return
    stop = threading.Event()

    def mirror() -> None:
        last = -1.0
        while True:
            stopping = stop.wait(max(manager.progress_interval, 0.2))
            now = _task_percentage(manager, task_id)
            if now != last:
                try:
                    update_progress_artifact(artifact_id, now)
                    last = now
                except Exception:
                    log.exception("could not update the progress artifact")
            if stopping:
                return

    thread = threading.Thread(target=mirror, name="datatrace-artifact", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _summary_artifact(manager: TaskManager, task_id: str, name: str) -> None:
    """A table artifact: each unit's status, rows, attempts, verification and error."""
    rows = []
    for unit in manager.store.load_units(task_id):
        row = manager.store.unit_row(task_id, unit.id)
        started, finished = row["started_at"], row["finished_at"]
        seconds = (finished - started).total_seconds() if started and finished else None
        verification = row["verification"] or {}
        rows.append(
            {
                "unit": unit.name,
                "status": unit.status.value,
                "rows": unit.processed_records,
                "total": unit.total_records,
                "seconds": None if seconds is None else round(seconds, 2),
                "attempts": unit.attempts,
                "verified": verification.get("ok", "") if verification else "",
                "error": unit.error_message,
            }
        )
    try:
        create_table_artifact(
            rows,
            key=artifact_key(name, task_id) + "-units",
            description=f"units of sync task {name} ({task_id})",
        )
    except Exception:
        log.exception("could not create the summary artifact")
