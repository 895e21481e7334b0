"""Task rollups computed from the store, for readers in another process than the job.

`ProgressMonitor.rollup` needs the job's own memory; the side-app usually runs
elsewhere, so here speed comes from the event log: rows per second of a running unit
over a moving window of its progress events, and from it an ETA per unit and per task.
The window ends at the task's newest event, not at this host's clock, so a job on a
machine whose clock differs still gets a sensible rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select

from datatrace_tasks.live.progress import TaskRollup
from datatrace_tasks.state.models import TaskUnitEventRow
from datatrace_tasks.state.store import Store
from datatrace_tasks.state.units import TaskUnit, UnitStatus

__all__ = ["UnitRate", "last_activity", "task_rollup", "unit_rates"]

DEFAULT_WINDOW_SECONDS = 10.0


@dataclass(frozen=True)
class UnitRate:
    """A unit's speed over the window and the time it still needs at that speed."""

    unit_id: str
    rows_per_second: float
    eta_seconds: float | None


def unit_rates(
    store: Store,
    task_id: str,
    units: list[TaskUnit],
    *,
    window_seconds: float = DEFAULT_WINDOW_SECONDS,
) -> dict[str, UnitRate]:
    """Rows/s and ETA of each unit; only running units have a speed.

    Args:
        store: the state store.
        task_id: the task.
        units: its units as loaded (their processed/total are the current figures).
        window_seconds: the moving window over which speed is measured.
    """
    samples = _recent_samples(store, task_id, window_seconds)
    rates: dict[str, UnitRate] = {}
    for unit in units:
        rate = 0.0
        points = samples.get(unit.id, [])
        if unit.status is UnitStatus.RUNNING and len(points) >= 2:
            (t0, n0), (t1, n1) = points[0], points[-1]
            seconds = (t1 - t0).total_seconds()
            if seconds > 0:
                rate = max(0.0, (n1 - n0) / seconds)
        remaining = max(0, unit.total_records - unit.processed_records)
        if unit.status is UnitStatus.COMPLETED:
            eta: float | None = 0.0
        elif rate > 0:
            eta = remaining / rate
        else:
            eta = None
        rates[unit.id] = UnitRate(unit.id, rate, eta)
    return rates


def task_rollup(task_id: str, units: list[TaskUnit], rates: dict[str, UnitRate]) -> TaskRollup:
    """Units by status, rows processed of total, summed speed and ETA of the task."""
    by_status = {s.value: 0 for s in UnitStatus}
    for unit in units:
        by_status[unit.status.value] += 1
    processed = sum(u.processed_records for u in units)
    total = sum(max(u.total_records, u.processed_records) for u in units)
    rate = sum(r.rows_per_second for r in rates.values())
    remaining = max(0, total - processed)
    if remaining == 0:
        eta: float | None = 0.0
    elif rate > 0:
        eta = remaining / rate
    else:
        eta = None
    return TaskRollup(task_id, by_status, processed, total, rate, eta)


def last_activity(store: Store, task_id: str) -> datetime | None:
    """When the task last wrote an event (naive UTC), or None if it never did."""
    with store.session() as s:
        return s.scalar(
            select(func.max(TaskUnitEventRow.created_at)).where(TaskUnitEventRow.task_id == task_id)
        )


def _recent_samples(
    store: Store, task_id: str, window_seconds: float
) -> dict[str, list[tuple[datetime, int]]]:
    """(time, processed) of each unit's events in the window ending at the newest one."""
    newest = last_activity(store, task_id)
    if newest is None:
        return {}
    since = newest - timedelta(seconds=window_seconds)
    with store.session() as s:
        rows = s.execute(
            select(
                TaskUnitEventRow.unit_id,
                TaskUnitEventRow.created_at,
                TaskUnitEventRow.processed_records,
            )
            .where(
                TaskUnitEventRow.task_id == task_id,
                TaskUnitEventRow.unit_id.is_not(None),
                TaskUnitEventRow.created_at >= since,
            )
            .order_by(TaskUnitEventRow.id)
        ).all()
    samples: dict[str, list[tuple[datetime, int]]] = {}
    for unit_id, at, processed in rows:
        samples.setdefault(str(unit_id), []).append((at, int(processed)))
    return samples
