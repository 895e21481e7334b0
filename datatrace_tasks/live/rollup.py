"""Rows per second and ETAs, per unit and per task: the one place they are computed.

Jobs usually run in another process than their readers (the side-app, a dashboard),
so speed comes from the store's event log, not from anyone's memory: rows per second
of a running unit over a moving window of its events, and from it an ETA per unit
and per task. The window ends at the task's newest event, not at this host's clock,
so a job on a machine whose clock differs still gets a sensible rate, and the same
log always gives the same figures, whoever asks and whenever.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from datatrace_tasks.state.models import TaskUnitEventRow
from datatrace_tasks.state.store import Store
from datatrace_tasks.state.units import Progress, TaskUnit, UnitStatus

__all__ = [
    "DEFAULT_WINDOW_SECONDS",
    "TaskProgress",
    "TaskRollup",
    "UnitRate",
    "UnitRun",
    "task_progress",
    "unit_runs",
    "task_rollup",
    "unit_rates",
]

DEFAULT_WINDOW_SECONDS = 10.0

_Sample = tuple[datetime, int]  # (event time, rows processed then)


@dataclass(frozen=True)
class UnitRate:
    """A unit's speed over the window and the time it still needs at that speed."""

    unit_id: str
    rows_per_second: float
    eta_seconds: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, rounded as every API answer shows it."""
        return {
            "id": self.unit_id,
            "rows_per_second": round(self.rows_per_second, 1),
            "eta_seconds": _rounded(self.eta_seconds),
        }


@dataclass(frozen=True)
class TaskRollup(Progress):
    """A task at a glance: units by status, rows done of total, speed and ETA."""

    task_id: str
    units_by_status: dict[str, int]
    processed_records: int
    total_records: int
    rows_per_second: float
    eta_seconds: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, figures rounded as the page shows them."""
        data = self.progress_dict()
        data["rows_per_second"] = round(self.rows_per_second, 1)
        data["eta_seconds"] = _rounded(self.eta_seconds)
        return data


@dataclass(frozen=True)
class TaskProgress:
    """A task's units as loaded, the speed and ETA of each, and the task's rollup."""

    units: list[TaskUnit]
    rates: dict[str, UnitRate]
    rollup: TaskRollup

    def running_rates(self) -> list[UnitRate]:
        """The rates of the running units (the only ones with a speed), in task order."""
        return [self.rates[u.id] for u in self.units if u.status is UnitStatus.RUNNING]


def task_progress(
    store: Store, task_id: str, *, window_seconds: float = DEFAULT_WINDOW_SECONDS
) -> TaskProgress:
    """Load a task's units and compute each one's rate and the task's rollup.

    Raises:
        TaskNotFound: no such task (through `Store.load_units`).
    """
    units = store.load_units(task_id)
    rates = unit_rates(store, task_id, units, window_seconds=window_seconds)
    return TaskProgress(units, rates, task_rollup(task_id, units, rates))


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
        running = unit.status is UnitStatus.RUNNING
        rate = _rate(samples.get(unit.id, [])) if running else 0.0
        remaining = max(0, unit.total_records - unit.processed_records)
        eta = _eta(remaining, rate, finished=unit.status is UnitStatus.COMPLETED)
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
    eta = _eta(remaining, rate, finished=remaining == 0)
    return TaskRollup(task_id, by_status, processed, total, rate, eta)


def _last_activity(store: Store, task_id: str) -> datetime | None:
    """When the task last wrote an event (naive UTC), or None if it never did."""
    with store.session() as s:
        return s.scalar(
            select(func.max(TaskUnitEventRow.created_at)).where(TaskUnitEventRow.task_id == task_id)
        )


def _rate(points: list[_Sample]) -> float:
    """Rows per second between the first and the last sample; 0 when unmeasurable."""
    if len(points) < 2:
        return 0.0
    (t0, n0), (t1, n1) = points[0], points[-1]
    seconds = (t1 - t0).total_seconds()
    return max(0.0, (n1 - n0) / seconds) if seconds > 0 else 0.0


def _eta(remaining: int, rate: float, *, finished: bool) -> float | None:
    """Seconds left: 0 when finished, remaining / rate at a known speed, else unknown."""
    if finished:
        return 0.0
    return remaining / rate if rate > 0 else None


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 1)


def _recent_samples(store: Store, task_id: str, window_seconds: float) -> dict[str, list[_Sample]]:
    """(time, processed) of each unit's events in the window ending at the newest one."""
    newest = _last_activity(store, task_id)
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
    samples: dict[str, list[_Sample]] = {}
    for unit_id, at, processed in rows:
        samples.setdefault(str(unit_id), []).append((at, int(processed)))
    return samples


HISTORY_POINTS = 40
"""Points of a unit's rows/s chart at most, however long its run."""


@dataclass(frozen=True)
class UnitRun:
    """A unit's last run as the dashboard draws it: how long it ran, its average speed,
    and its rows/s over time, `(seconds since the run started, rows/s)` pairs."""

    unit_id: str
    elapsed_seconds: float | None
    average_rows_per_second: float | None
    rate_history: list[tuple[float, float]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, rounded as every API answer shows it."""
        return {
            "elapsed_seconds": _rounded(self.elapsed_seconds),
            "average_rows_per_second": _rounded(self.average_rows_per_second),
            "rate_history": [[round(t, 2), round(r, 1)] for t, r in self.rate_history],
        }


RunSamples = dict[str, list[_Sample]]
"""Per unit, the samples of its last run, in event order."""


def fold(
    runs: RunSamples,
    unit_id: str,
    kind: str,
    status: str,
    sample: _Sample,
    *,
    keep: int | None = None,
) -> None:
    """Add one event to the samples of its unit's last run (a `running` event starts a
    new run). With `keep`, a run over that many samples drops every other one between
    its first and last, which keep its elapsed time and average exact."""
    if kind == "status" and status == UnitStatus.RUNNING.value:
        runs[unit_id] = []  # a new run: forget the earlier ones
    samples = runs.setdefault(unit_id, [])
    samples.append(sample)
    if keep is not None and len(samples) > keep:
        samples[1:-1] = samples[1:-1:2]


def unit_runs(store: Store, task_id: str, *, upto: int | None = None) -> dict[str, UnitRun]:
    """Each unit's last run, from the event log (up to event `upto`): from its last
    `running` event to its newest event (its end, for a unit that finished), rows
    counted in that run only."""
    return {u: unit_run(u, samples) for u, samples in read_runs(store, task_id, upto).items()}


def read_runs(
    store: Store, task_id: str, upto: int | None, *, keep: int | None = None
) -> RunSamples:
    """The samples of each unit's last run, read from the event log up to event `upto`."""
    query = select(
        TaskUnitEventRow.unit_id,
        TaskUnitEventRow.kind,
        TaskUnitEventRow.status,
        TaskUnitEventRow.created_at,
        TaskUnitEventRow.processed_records,
    ).where(TaskUnitEventRow.task_id == task_id, TaskUnitEventRow.unit_id.is_not(None))
    if upto is not None:
        query = query.where(TaskUnitEventRow.id <= upto)
    with store.session() as s:
        rows = s.execute(query.order_by(TaskUnitEventRow.id)).all()
    runs: RunSamples = {}
    for unit_id, kind, status, at, processed in rows:
        fold(runs, str(unit_id), kind, status, (at, int(processed)), keep=keep)
    return runs


def unit_run(unit_id: str, samples: list[_Sample]) -> UnitRun:
    """A unit's run from its samples: elapsed from first to last, their average, and
    at most HISTORY_POINTS rows/s points between."""
    if len(samples) < 2:
        return UnitRun(unit_id, None, None, [])
    (t0, n0), (t1, n1) = samples[0], samples[-1]
    elapsed = (t1 - t0).total_seconds()
    average = (n1 - n0) / elapsed if elapsed > 0 else None
    step = max(1, -(-(len(samples) - 1) // HISTORY_POINTS))  # ceil: at most HISTORY_POINTS
    picked = samples[::step]
    if picked[-1] is not samples[-1]:
        picked.append(samples[-1])
    history = []
    for (a, na), (b, nb) in zip(picked, picked[1:], strict=False):
        seconds = (b - a).total_seconds()
        if seconds > 0:
            history.append(((b - t0).total_seconds(), max(0.0, (nb - na) / seconds)))
    return UnitRun(unit_id, elapsed, average, history)
