"""ProgressMonitor: in-process publish/subscribe of unit changes.

The manager publishes every change of every unit here (progress is not throttled in
memory); subscribers in the same process (the CLI's progress bars) each get their own
queue, so a slow one never holds up a unit thread. Readers in other processes, the
side-app included, follow the store's event log instead (`EventBroadcaster`), and
rows/s and ETAs come from that log too (`datatrace_tasks.live.rollup`).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from datatrace_tasks.state.units import TaskUnit

__all__ = ["ProgressMonitor", "UnitUpdate"]


@dataclass(frozen=True)
class UnitUpdate:
    """One published change: the unit as it is now, and which task it belongs to."""

    task_id: str
    unit: TaskUnit
    at: float = field(default_factory=time.monotonic)


class ProgressMonitor:
    """Fans unit updates out to subscribers and keeps the latest view of each unit."""

    def __init__(self, *, max_queue: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._units: dict[str, dict[str, TaskUnit]] = {}
        self._subscribers: list[queue.Queue[UnitUpdate]] = []
        self._max_queue = max_queue

    def publish(self, task_id: str, unit: TaskUnit) -> None:
        """Record `unit`'s new state and hand it to every subscriber (never blocks)."""
        update = UnitUpdate(task_id, unit)
        with self._lock:
            self._units.setdefault(task_id, {})[unit.id] = unit
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

    def forget(self, task_id: str) -> None:
        """Drop a task's cached view (its units were cleared)."""
        with self._lock:
            self._units.pop(task_id, None)
