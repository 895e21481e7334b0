"""Prefect state hooks that mirror each unit's task-run state into the manager.

A hook records and publishes, nothing more; it never raises into Prefect's engine
(a failing store write is logged and the run carries on).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from datatrace_tasks.exceptions import UnitAlreadyRunning, UnitPaused
from datatrace_tasks.state.cache import UnitCache
from datatrace_tasks.state.leases import LeaseChange, holder_name
from datatrace_tasks.state.units import UnitStatus

log = logging.getLogger("datatrace.hooks")

Hook = Callable[[Any, Any, Any], None]


def _unit_id() -> str:
    # The run context itself, not `prefect.runtime` (which also reads the environment
    # for overrides on every access): this runs at every unit's end.
    from prefect.context import TaskRunContext

    context = TaskRunContext.get()
    assert context is not None, "a unit hook runs inside its task run"
    return str(context.parameters["unit_id"])


def state_exception(state: Any) -> BaseException | None:
    """The exception a Failed state carries, if it is in memory."""
    data = getattr(state, "data", None)
    if isinstance(data, BaseException):
        return data
    try:
        state.result(raise_on_failure=True)
    except BaseException as exc:  # noqa: BLE001 - we want whatever the run raised
        return exc
    return None


def _guarded(name: str, body: Callable[[Any, Any, Any], None]) -> Hook:
    def hook(task: Any, task_run: Any, state: Any) -> None:
        try:
            body(task, task_run, state)
        except Exception:
            log.exception("hook %s failed for task run %s; the run carries on", name, task_run.name)

    hook.__name__ = name
    return hook


def record_pause(manager: UnitCache, task_id: str, unit_id: str, exc: UnitPaused) -> None:
    """Record a unit that stopped on a pause request.

    A unit stopped before it began goes back to where it was: pending if it never
    copied anything, paused (at its checkpoint) otherwise.
    """
    unit = manager.get_unit(task_id, unit_id)
    started = exc.started or unit.checkpoint is not None
    status = UnitStatus.PAUSED if started else UnitStatus.PENDING
    manager.write_unit_status(task_id, unit_id, status)


def unit_hooks(
    manager: UnitCache | Callable[[], UnitCache],
    task_id: str,
    error_strategy: str,
    *,
    lease_nonce: str | None = None,
) -> dict[str, list[Hook]]:
    """The `on_completion` and `on_failure` hooks for one task's units.

    A unit is marked running by its task body once it holds its lease and its
    database slots, not by `on_running`: until then it only waits, and shows so.

    `manager` may be a callable returning the manager: the hooks then run wherever the
    unit runs (a Dask worker) against that process's manager, and pickle small.

    `lease_nonce` is the run's lease nonce: a unit that ends well left its lease held
    (`unit_lease(handed_on=True)`), and `completed` gives it back in the same write.
    """
    get: Callable[[], UnitCache] = manager if callable(manager) else (lambda: manager)

    def on_completion(_task: Any, _task_run: Any, _state: Any) -> None:
        # Hooks run in the process that ran the unit: the holder's name is the body's.
        lease = LeaseChange(holder_name(lease_nonce)) if lease_nonce else None
        get().update_unit_status_with_sync(task_id, _unit_id(), UnitStatus.COMPLETED, lease=lease)

    def on_failure(_task: Any, _task_run: Any, state: Any) -> None:
        manager = get()
        unit_id = _unit_id()
        exc = state_exception(state)
        if isinstance(exc, UnitAlreadyRunning):
            # Another runner holds this unit: its row is that runner's to write.
            log.warning("%s; this attempt left it alone", exc)
            return
        manager.fail_unit_with_sync(task_id, unit_id, exc if exc is not None else state.message)
        if error_strategy == "pause":
            log.warning("unit %r failed under the pause strategy: pausing the task", unit_id)
            manager.request_pause(task_id)

    return {
        "on_completion": [_guarded("datatrace_on_completion", on_completion)],
        "on_failure": [_guarded("datatrace_on_failure", on_failure)],
    }
