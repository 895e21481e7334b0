"""The Prefect side of `execute_auto_mode`: one flow, one mapped task run per unit."""

from __future__ import annotations

import importlib
import logging
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from prefect import State, flow, task
from prefect.artifacts import (
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.states import Cancelled, Completed, Failed
from prefect.tasks import exponential_backoff
from sqlalchemy import exc as sa_exc

from datatrace_tasks.exceptions import DataTraceError, UnitPaused
from datatrace_tasks.orchestration.hooks import state_exception, unit_hooks
from datatrace_tasks.orchestration.lease import runner_name, task_lease, unit_lease
from datatrace_tasks.orchestration.limits import database_slots, load_settings, prepare_limits
from datatrace_tasks.orchestration.scaleout import ManagerHandle, manager_handle, task_runner_for
from datatrace_tasks.state.cache import UnitCache
from datatrace_tasks.state.reporter import UnitReporter
from datatrace_tasks.state.units import TaskStatus, UnitStatus, percentage

if TYPE_CHECKING:
    from datatrace_tasks.state.reporter import ProcessFn

log = logging.getLogger("datatrace")

CANCEL_POLL_SECONDS = 1.0
"""How often the runner asks Prefect whether its flow run is being cancelled."""


_TRANSIENT_DB_ERRORS: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError,  # lost connection, server gone away, lock wait timeout, deadlock
    sa_exc.InterfaceError,  # the driver's connection is unusable
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,  # no pooled connection became free in time
    ConnectionError,
    TimeoutError,
)
_TERMINAL_DB_ERRORS: tuple[type[BaseException], ...] = (
    sa_exc.IntegrityError,  # the data breaks a constraint: the same rows fail again
    sa_exc.ProgrammingError,  # bad SQL, missing table or column, no privilege
    sa_exc.DataError,
    sa_exc.NotSupportedError,
)


def _driver_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """The DB-API drivers' own connection errors, for code that calls a driver directly."""
    transient: list[type[BaseException]] = []
    terminal: list[type[BaseException]] = []
    for module_name in ("pymysql.err", "psycopg"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        transient += [module.OperationalError, module.InterfaceError]
        terminal += [module.IntegrityError, module.ProgrammingError, module.DataError]
    return tuple(transient), tuple(terminal)


_DRIVER_TRANSIENT, _DRIVER_TERMINAL = _driver_errors()


def is_transient(exc: BaseException) -> bool:
    """Whether another attempt of a unit that raised `exc` may succeed.

    DataTrace's own errors say so themselves (`transient`). Lost connections,
    timeouts and deadlocks (SQLAlchemy `OperationalError`/`InterfaceError`, and the
    pymysql/psycopg errors they wrap) are transient; constraint violations and bad
    SQL (`IntegrityError`, `ProgrammingError`, `DataError`) are terminal. Any other
    error is retried, as before: the retry count bounds it.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DataTraceError):
            return current.transient
        if isinstance(current, _TERMINAL_DB_ERRORS + _DRIVER_TERMINAL):
            return False
        if isinstance(current, _TRANSIENT_DB_ERRORS + _DRIVER_TRANSIENT):
            return True
        current = current.__cause__ or current.__context__
    return True


def _retryable(_task: Any, _task_run: Any, state: Any) -> bool:
    """Prefect's retry condition: retry only what `is_transient` accepts (never a pause)."""
    exc = state_exception(state)
    if exc is None:
        return True
    return is_transient(exc)


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
        run_unit = _unit_body(handle, task_id, process_fn, limit_names, runner_name())
        hooks: dict[str, Any] = unit_hooks(handle.get, task_id, strategy)
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


def _unit_body(
    handle: ManagerHandle,
    task_id: str,
    process_fn: ProcessFn,
    limit_names: list[str],
    lease_owner: str,
) -> Callable[[str, str], int]:
    """The body of one unit's task run. It closes over picklable values only, so
    cloudpickle can send it to a Dask worker, where `handle` finds that process's manager.
    """

    def run_unit(unit_id: str, unit_name: str) -> int:
        manager = handle.get()

        def not_started() -> UnitPaused:
            return UnitPaused(f"unit {unit_name!r} not started: the task is pausing", started=False)

        if manager.pause_requested(task_id):
            raise not_started()
        with (
            # A runner killed with kill -9 keeps its unit leases until they expire: a
            # resume waits that long for them rather than leaving the unit unfinished.
            unit_lease(
                manager.store,
                task_id,
                unit_id,
                lease_seconds=manager.lease_seconds,
                wait_seconds=manager.lease_seconds + 1,
                should_stop=lambda: manager.pause_requested(task_id),
                owner=lease_owner,
            ),
            database_slots(
                limit_names,
                should_stop=lambda: manager.pause_requested(task_id),
                on_stop=not_started,
            ),
        ):
            current = next(u for u in manager.get_task_units(task_id) if u.id == unit_id)
            reporter = UnitReporter(manager, task_id, current)
            process_fn(current, reporter)
            return reporter.processed

    return run_unit


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
        with (
            _cancel_watch(manager, task_id) as cancelled,
            _progress_artifact(manager, task_id, task_name),
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
        _summary_artifact(manager, task_id, task_name)
        return _final_state(manager, task_id, cancelled=cancelled.is_set())

    return sync_units


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


@contextmanager
def _cancel_watch(manager: UnitCache, task_id: str) -> Iterator[threading.Event]:
    """Turn a cancellation of this flow run (or of a parent) into a cooperative pause.

    Prefect does not interrupt a running task body, and a worker's SIGTERM would
    leave the units running to the end: so a thread polls the flow runs' states and,
    on Cancelling, raises the task's pause flag. The units stop at their next batch
    and are recorded paused with their checkpoints; a later run resumes them.
    """
    from prefect.context import FlowRunContext

    cancelled = threading.Event()
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        yield cancelled
        return
    first = context.flow_run
    stop = threading.Event()

    def watch() -> None:
        from prefect.client.orchestration import get_client

        try:
            with get_client(sync_client=True) as client:
                ids = [first.id]
                parent = first.parent_task_run_id
                while parent is not None and len(ids) < 10:
                    flow_run_id = client.read_task_run(parent).flow_run_id
                    if flow_run_id is None:
                        break
                    ids.append(flow_run_id)
                    parent = client.read_flow_run(flow_run_id).parent_task_run_id
                while not stop.wait(CANCEL_POLL_SECONDS):
                    for flow_run_id in ids:
                        try:
                            state = client.read_flow_run(flow_run_id).state
                        except Exception:  # the API may be briefly away; ask again later
                            continue
                        if state is not None and (state.is_cancelling() or state.is_cancelled()):
                            log.warning(
                                "flow run %s is cancelled: pausing sync task %s at the next "
                                "batch of each unit",
                                flow_run_id,
                                task_id,
                            )
                            cancelled.set()
                            manager.request_pause(task_id)
                            return
        except Exception:
            log.exception("the cancellation watch of task %s stopped", task_id)

    thread = threading.Thread(target=watch, name="datatrace-cancel-watch", daemon=True)
    thread.start()
    try:
        yield cancelled
    finally:
        stop.set()
        thread.join()


def _final_state(manager: UnitCache, task_id: str, *, cancelled: bool = False) -> State[Any]:
    """Tell the truth about the run: completed, failed with counts, paused or cancelled."""
    units = manager.store.load_units(task_id)
    counts = {s: sum(1 for u in units if u.status is s) for s in UnitStatus}
    done, failed = counts[UnitStatus.COMPLETED], counts[UnitStatus.FAILED]
    paused = counts[UnitStatus.PAUSED] + counts[UnitStatus.PENDING] + counts[UnitStatus.RUNNING]
    summary = f"{done} of {len(units)} units completed, {failed} failed, {paused} not finished"
    if cancelled:
        message = (
            f"cancelled: {summary}; the units stopped at their checkpoints, "
            f"run again with task_id={task_id} to resume"
        )
        manager.store.set_task_status(task_id, TaskStatus.PAUSED, message)
        return Cancelled(message=message)
    if failed:
        manager.store.set_task_status(task_id, TaskStatus.FAILED, summary)
        return Failed(message=summary)
    if paused:
        message = f"paused: {summary}; resume with task_id={task_id}"
        manager.store.set_task_status(task_id, TaskStatus.PAUSED, message)
        return Cancelled(name="Paused", message=message)
    manager.store.set_task_status(task_id, TaskStatus.COMPLETED, summary)
    return Completed(message=summary)


def artifact_key(name: str, task_id: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "task"
    return f"datatrace-{slug}-{task_id[:8]}"


def _task_percentage(manager: UnitCache, task_id: str) -> float:
    # From the store, not memory: units running on Dask workers report there.
    units = manager.store.load_units(task_id)
    total = sum(max(u.total_records, u.processed_records) for u in units)
    done = sum(u.processed_records for u in units)
    if total == 0:
        return 100.0 if all(u.status is UnitStatus.COMPLETED for u in units) else 0.0
    return round(percentage(done, total), 2)


@contextmanager
def _progress_artifact(manager: UnitCache, task_id: str, name: str) -> Iterator[None]:
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
            try:
                now = _task_percentage(manager, task_id)
                if now != last:
                    update_progress_artifact(artifact_id, now)
                    last = now
            except Exception:  # the store or the API may be briefly away: next interval
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


def _summary_artifact(manager: UnitCache, task_id: str, name: str) -> None:
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
