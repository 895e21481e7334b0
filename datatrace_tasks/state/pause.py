"""The pause flag of each task: raised here or by any other process sharing the store.

A unit asks at every batch; asking the store each time would be one query per batch
per unit, so another process's request is looked up at most once per interval, and
one seen (or made here) is remembered until the next run clears it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from datatrace_tasks.state.store import Store

T = TypeVar("T")


class PauseFlags:
    """The pause flags of the tasks this process runs.

    Args:
        store: where the flags are shared.
        interval: seconds between two looks at the store for one task.
        retrying: runs a store call, retrying while the store is briefly away.
    """

    def __init__(
        self, store: Store, interval: float, retrying: Callable[[Callable[[], bool]], bool]
    ) -> None:
        self._store = store
        self._interval = max(interval, 0.2)
        self._retrying = retrying
        self._lock = threading.Lock()
        self._paused: set[str] = set()
        self._checked: dict[str, float] = {}

    def request(self, task_id: str) -> None:
        """Raise the flag, here and in the store."""
        with self._lock:
            self._paused.add(task_id)
        self._store.set_pause_requested(task_id, True)

    def clear(self, task_id: str) -> None:
        """Lower the flag, here and in the store (a new run of the task starts)."""
        self.forget(task_id)
        self._store.set_pause_requested(task_id, False)

    def forget(self, task_id: str) -> None:
        """Drop what this process remembers of the task's flag."""
        with self._lock:
            self._paused.discard(task_id)
            self._checked.pop(task_id, None)

    def requested(self, task_id: str) -> bool:
        """Whether the task should pause: asked here, or (looked up once per interval) elsewhere."""
        with self._lock:
            if task_id in self._paused:
                return True
            if time.monotonic() - self._checked.get(task_id, 0.0) < self._interval:
                return False
            self._checked[task_id] = time.monotonic()
        if self._retrying(lambda: self._store.pause_requested(task_id)):
            with self._lock:
                self._paused.add(task_id)
            return True
        return False
