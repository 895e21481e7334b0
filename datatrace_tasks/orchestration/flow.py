"""The Prefect side of `execute_auto_mode`: one flow, one mapped task run per unit."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from prefect import State, flow, task
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext
from prefect.futures import as_completed
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.states import Cancelled, Completed, Failed
from prefect.tasks import exponential_backoff

from datatrace_tasks.exceptions import UnitPaused
from datatrace_tasks.orchestration.artifacts import progress_artifact, summary_artifact
from datatrace_tasks.orchestration.hooks import record_pause, unit_hooks
from datatrace_tasks.orchestration.lease import task_lease, unit_lease
from datatrace_tasks.orchestration.limits import database_slots, load_settings, prepare_limits
from datatrace_tasks.orchestration.retry import retryable
from datatrace_tasks.orchestration.scaleout import ManagerHandle, manager_handle, task_runner_for
from datatrace_tasks.orchestration.stopping import cancel_watch
from datatrace_tasks.state.cache import UnitCache
from datatrace_tasks.state.leases import LeaseChange, holder_name
from datatrace_tasks.state.outcome import RunOutcome, outcome
from datatrace_tasks.state.reporter import UnitReporter
from datatrace_tasks.state.units import TaskStatus, TaskUnit, UnitStatus

if TYPE_CHECKING:
    from datatrace_tasks.state.reporter import ProcessFn

log = logging.getLogger("datatrace")


def run_units(
    manager: UnitCache,
    task_id: str,
    *,
    concurrency: int,
    process_fn: ProcessFn,
    error_strategy: str | None,
    retries: int,
    retry_delay_seconds: float,
) -> int:
    """Run the task's unfinished units as one Prefect flow; see `TaskManager.execute_auto_mode`.

    Raises:
        ConfigError: a database limit of 0 or less (nothing is written).
        TaskAlreadyRunning: another live runner holds the task.
    """
    sync_task = manager.store.get_task(task_id)
    strategy = error_strategy or sync_task.error_strategy
    limit_names = prepare_limits([sync_task.source, sync_task.target], load_settings())
    task_runner, runner_limits = task_runner_for(concurrency)
    with (
        task_lease(manager.store, task_id, lease_seconds=manager.lease_seconds),
        manager_handle(manager) as handle,
    ):
        units = manager.load_task_units_from_db(task_id)
        todo = [u for u in units if u.status is not UnitStatus.COMPLETED]
        manager.clear_pause(task_id)
        if not todo:
            return 0
        names = {u.id: u.name for u in todo}
        nonce = uuid.uuid4().hex[:6]
        unit_task = _unit_task(
            _unit_body(handle, task_id, process_fn, limit_names, nonce),
            unit_hooks(handle.get, task_id, strategy, lease_nonce=nonce),
            retries=retries,
            retry_delay_seconds=retry_delay_seconds,
        )
        sync_units = flow(
            name="datatrace-sync",
            flow_run_name=sync_task.name,
            task_runner=cast(Any, task_runner),
            persist_result=False,
            validate_parameters=False,
        )(_flow_body(handle, task_id, sync_task.name, unit_task, names, concurrency, runner_limits))

        manager.store.set_task_status(task_id, TaskStatus.RUNNING, f"{len(todo)} units to run")
        # The flow heartbeat thread sleeps in 1 s steps and delays exit; our lease is the
        # liveness signal that matters here.
        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            sync_units(return_state=True)
        manager.flush_progress(task_id)
        after = {u.id: u for u in manager.load_task_units_from_db(task_id)}
        return sum(1 for unit_id in names if after[unit_id].status is UnitStatus.COMPLETED)


def _unit_task(
    body: Callable[[str, str], Any],
    hooks: dict[str, Any],
    *,
    retries: int,
    retry_delay_seconds: float,
) -> Any:
    """The Prefect task one unit runs as: named after the unit, retried when transient."""
    return task(
        name="sync-unit",
        task_run_name="{unit_name}",
        retries=retries,
        retry_delay_seconds=exponential_backoff(retry_delay_seconds) if retries else 0,
        retry_condition_fn=retryable,
        cache_policy=NO_CACHE,
        persist_result=False,
        on_completion=hooks["on_completion"],
        on_failure=hooks["on_failure"],
    )(body)


def _unit_body(
    handle: ManagerHandle,
    task_id: str,
    process_fn: ProcessFn,
    limit_names: list[str],
    run_nonce: str,
) -> Callable[[str, str], int]:
    """The body of one unit's task run. It closes over picklable values only, so
    cloudpickle can send it to a Dask worker, where `handle` finds that process's manager.
    """

    def run_unit(unit_id: str, unit_name: str) -> Any:
        manager = handle.get()
        try:
            return copy_unit(manager, unit_id, unit_name)
        except UnitPaused as exc:
            # Prefect shows the run as paused, not failed; the store keeps the checkpoint.
            record_pause(manager, task_id, unit_id, exc)
            return Cancelled(name="Paused", message=str(exc))

    def copy_unit(manager: UnitCache, unit_id: str, unit_name: str) -> int:
        def not_started() -> UnitPaused:
            return UnitPaused(f"unit {unit_name!r} not started: the task is pausing", started=False)

        if manager.pause_requested(task_id):
            raise not_started()
        start = _Start(manager, task_id, unit_id, slots=bool(limit_names))
        with (
            # A live runner's unit lease is waited out (a dead one on this host is
            # taken over at once) rather than leaving the unit unfinished.
            unit_lease(
                manager.store,
                task_id,
                unit_id,
                lease_seconds=manager.lease_seconds,
                wait_seconds=manager.lease_seconds + 1,
                should_stop=lambda: manager.pause_requested(task_id),
                # Named after this process (a Dask worker's own pid), the run's nonce
                # shared by every attempt of the unit here.
                owner=holder_name(run_nonce),
                claim=start.claim,
                handed_on=True,  # the completion hook gives it back with `completed`
            ),
            database_slots(
                limit_names,
                should_stop=lambda: manager.pause_requested(task_id),
                on_stop=not_started,
            ),
        ):
            current = start.running()
            reporter = UnitReporter(manager, task_id, current)
            process_fn(current, reporter)
            return reporter.processed

    return run_unit


class _Start:
    """A unit's start: its lease, then `running` once it holds the lease and its slots.

    Without database slots to wait for, the lease and `running` are one store write.
    Until then the unit only waits, and shows so (pending).
    """

    def __init__(self, manager: UnitCache, task_id: str, unit_id: str, *, slots: bool) -> None:
        self._manager, self._task_id, self._unit_id = manager, task_id, unit_id
        self._slots = slots
        self._unit: TaskUnit | None = None

    def claim(self, owner: str) -> bool:
        """Take the unit's lease for `owner` (and mark it running when no slot is due)."""
        if self._slots:
            return self._manager.store.claim_unit(
                self._task_id, self._unit_id, owner, lease_seconds=self._manager.lease_seconds
            )
        self._unit = self._mark(LeaseChange(owner, self._manager.lease_seconds))
        return True

    def running(self) -> TaskUnit:
        """The unit, marked running (once it holds its lease and its slots)."""
        return self._unit if self._unit is not None else self._mark(None)

    def _mark(self, lease: LeaseChange | None) -> TaskUnit:
        # Prefect counts the attempts (run_count grows on every retry).
        return self._manager.write_unit_status(
            self._task_id,
            self._unit_id,
            UnitStatus.RUNNING,
            error_message="",
            attempts=_attempt(),
            lease=lease,
        )


def _attempt() -> int:
    """Which attempt of the current unit's task run this is (1 on the first)."""
    context = TaskRunContext.get()
    return int(context.task_run.run_count or 1) if context is not None else 1


def _flow_body(
    handle: ManagerHandle,
    task_id: str,
    task_name: str,
    unit_task: Any,
    names: dict[str, str],
    concurrency: int,
    mapped: bool,
) -> Callable[[], State[Any]]:
    """The `datatrace-sync` flow's body. Prefect sends the flow along with each unit to
    a Dask worker, so it too closes over picklable values only.
    """

    def sync_units() -> State[Any]:
        manager = handle.get()
        _record_flow_run(manager, task_id)
        with (
            cancel_watch(manager, task_id) as cancelled,
            progress_artifact(manager, task_id, task_name),
        ):
            try:
                _run_all(unit_task, names, concurrency, mapped=mapped)
            except BaseException:
                # SIGTERM from a worker cancelling the run arrives here as Prefect's
                # TerminationSignal: stop the units at their next batch, record them.
                cancelled.set()
                manager.request_pause(task_id)
                manager.flush_progress(task_id)
                _final_state(manager, task_id, cancelled=True)
                raise
            manager.flush_progress(task_id)
        summary_artifact(manager, task_id, task_name)
        return _final_state(manager, task_id, cancelled=cancelled.is_set())

    return sync_units


def _record_flow_run(manager: UnitCache, task_id: str) -> None:
    """Tell the store which Prefect flow run this is, and where the Prefect UI shows it."""
    from prefect.runtime import flow_run
    from prefect.utilities.urls import url_for

    run_id = flow_run.get_id()
    if run_id is not None:
        manager.store.record_flow_run(task_id, run_id, url_for("flow-run", obj_id=run_id))


def _run_all(unit_task: Any, names: dict[str, str], concurrency: int, *, mapped: bool) -> None:
    """Run every unit and wait for all; at most `concurrency` at once on any task runner."""
    if mapped:  # the thread pool itself holds `concurrency` units at once
        unit_task.map(unit_id=list(names), unit_name=list(names.values())).wait()
        return
    pending: list[Any] = []
    for unit_id, unit_name in names.items():
        while len(pending) >= concurrency:
            pending.remove(next(as_completed(pending)))
        pending.append(unit_task.submit(unit_id=unit_id, unit_name=unit_name))
    for future in pending:
        future.wait()


def run_state(
    result: RunOutcome, *, cancelled: bool, about: str = ""
) -> tuple[TaskStatus, State[Any]]:
    """How a run ended, for the task row and for Prefect: completed, failed with counts,
    paused, or cancelled (units stopped at their checkpoints). Each message but the
    completed one names the task id to run again; `about` opens the message."""
    summary, again = about + result.summary, f"task_id={result.task_id}"
    data = {"task_id": result.task_id, "units": result.units}
    data.update(completed=result.completed, failed=result.failed)
    if cancelled:
        stopped = "the units stopped at their checkpoints"
        message = f"cancelled: {summary}; {stopped}, run again with {again} to resume"
        return TaskStatus.PAUSED, Cancelled(message=message)
    if result.failed:
        return TaskStatus.FAILED, Failed(message=f"{summary}; run again with {again}", data=data)
    if not result.ok:
        message = f"paused: {summary}; resume with {again}"
        return TaskStatus.PAUSED, Cancelled(name="Paused", message=message)
    return TaskStatus.COMPLETED, Completed(message=summary, data=data)


def _final_state(manager: UnitCache, task_id: str, *, cancelled: bool = False) -> State[Any]:
    """Record the truth about the run on the task and hand it to Prefect."""
    status, state = run_state(outcome(manager.store, task_id), cancelled=cancelled)
    manager.store.set_task_status(task_id, status, state.message or "")
    return state
