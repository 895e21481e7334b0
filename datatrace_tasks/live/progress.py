"""ProgressMonitor: in-process publish/subscribe of unit changes, with task rollups.

The manager publishes every change of every unit here (progress is not throttled
in memory); subscribers (a terminal view, the SSE side-app) each get their own
queue, so a slow one never holds up a unit thread.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from datatrace_tasks.state.units import TaskUnit, UnitStatus, percentage

_RATE_WINDOW_SECONDS = 10.0


@dataclass(frozen=True)
class UnitUpdate:
    """One published change: the unit as it is now, and which task it belongs to."""

    task_id: str
    unit: TaskUnit
    at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class TaskRollup:
    """A task at a glance: units by status, rows done of total, speed and ETA."""

    task_id: str
    units_by_status: dict[str, int]
    processed_records: int
    total_records: int
    rows_per_second: float
    eta_seconds: float | None

    @property
    def percentage(self) -> float:
        """Rows processed of total, in percent."""
        return percentage(self.processed_records, self.total_records)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "task_id": self.task_id,
            "units_by_status": self.units_by_status,
            "processed_records": self.processed_records,
            "total_records": self.total_records,
            "percentage": round(self.percentage, 2),
            "rows_per_second": round(self.rows_per_second, 1),
            "eta_seconds": None if self.eta_seconds is None else round(self.eta_seconds, 1),
        }


class ProgressMonitor:
    """Fans unit updates out to subscribers and keeps the latest view of each unit."""

    def __init__(self, *, max_queue: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._units: dict[str, dict[str, TaskUnit]] = {}
        self._samples: dict[tuple[str, str], deque[tuple[float, int]]] = {}
        self._subscribers: list[queue.Queue[UnitUpdate]] = []
        self._max_queue = max_queue

    def publish(self, task_id: str, unit: TaskUnit) -> None:
        """Record `unit`'s new state and hand it to every subscriber (never blocks)."""
        update = UnitUpdate(task_id, unit)
        with self._lock:
            self._units.setdefault(task_id, {})[unit.id] = unit
            samples = self._samples.setdefault((task_id, unit.id), deque())
            if unit.status is UnitStatus.RUNNING:
                samples.append((update.at, unit.processed_records))
                while samples and update.at - samples[0][0] > _RATE_WINDOW_SECONDS:
                    samples.popleft()
            else:
                samples.clear()
            subscribers = list(self._subscribers)
        for q in subscribers:
            try:
                q.put_nowait(update)
            except queue.Full:
                pass  # a subscriber that stopped reading loses updates, not the unit thread

    @contextmanager
    def subscribe(self) -> Iterator[queue.Queue[UnitUpdate]]:
        """A queue receiving every update published while the context is open."""
        q: queue.Queue[UnitUpdate] = queue.Queue(self._max_queue)
        with self._lock:
            self._subscribers.append(q)
        try:
            yield q
        finally:
            with self._lock:
                self._subscribers.remove(q)

    def units(self, task_id: str) -> list[TaskUnit]:
        """The latest published state of each unit of a task."""
        with self._lock:
            return list(self._units.get(task_id, {}).values())

    def unit_rate(self, task_id: str, unit_id: str) -> float:
        """Rows per second of a running unit over the last few seconds."""
        with self._lock:
            samples = list(self._samples.get((task_id, unit_id), ()))
        if len(samples) < 2 or samples[-1][0] <= samples[0][0]:
            return 0.0
        (t0, n0), (t1, n1) = samples[0], samples[-1]
        return max(0.0, (n1 - n0) / (t1 - t0))

    def rollup(self, task_id: str) -> TaskRollup:
        """Units by status, rows processed of total, rows/s and ETA for a task."""
        units = self.units(task_id)
        by_status = {s.value: 0 for s in UnitStatus}
        for unit in units:
            by_status[unit.status.value] += 1
        processed = sum(u.processed_records for u in units)
        total = sum(max(u.total_records, u.processed_records) for u in units)
        rate = sum(self.unit_rate(task_id, u.id) for u in units if u.status is UnitStatus.RUNNING)
        remaining = max(0, total - processed)
        eta = remaining / rate if rate > 0 else (0.0 if remaining == 0 else None)
        return TaskRollup(task_id, by_status, processed, total, rate, eta)

    def forget(self, task_id: str) -> None:
        """Drop a task's cached view (its units were cleared)."""
        with self._lock:
            self._units.pop(task_id, None)
            for key in [k for k in self._samples if k[0] == task_id]:
                del self._samples[key]
