"""The Prefect side of `execute_auto_mode`: one flow, one mapped task run per unit."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast

from prefect import State, flow, task
from prefect.cache_policies import NO_CACHE
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.states import Completed, Failed
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import exponential_backoff

from datatrace_tasks.exceptions import DataTraceError, UnitPaused
from datatrace_tasks.hooks import state_exception, unit_hooks
from datatrace_tasks.units import UnitStatus

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
    units = manager.load_task_units_from_db(task_id)
    todo = [u for u in units if u.status is not UnitStatus.COMPLETED]
    manager.clear_pause(task_id)
    if not todo:
        return 0
    names = {u.id: u.name for u in todo}

    def run_unit(unit_id: str, unit_name: str) -> int:
        if manager.pause_requested(task_id):
            raise UnitPaused(f"unit {unit_name!r} not started: the task is pausing", started=False)
        unit = manager.get_task_units(task_id)
        current = next(u for u in unit if u.id == unit_id)
        reporter = UnitReporter(manager, task_id, current)
        try:
            process_fn(current, reporter)
        except UnitPaused:
            raise
        except BaseException as exc:
            # Keep each attempt's error visible while Prefect decides on a retry.
            manager.update_unit_progress(task_id, unit_id, reporter.processed)
            log.warning("unit %r attempt failed: %s", unit_name, exc)
            raise
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
        futures = unit_task.map(unit_id=list(names), unit_name=list(names.values()))
        futures.wait()
        manager.flush_progress(task_id)
        return _final_state(manager, task_id)

    manager.store.set_task_status(task_id, "running", f"{len(todo)} units to run")
    # The flow heartbeat thread sleeps in 1 s steps and delays exit; units report their own.
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
