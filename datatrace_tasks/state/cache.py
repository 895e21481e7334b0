"""The unit cache: the seed's unit operations over memory, the store and the listeners.

The plain operations touch the thread-safe memory cache only. The `_with_sync` ones
(aliases `write_unit_status`, `write_unit_progress`, `write_unit_failure`: they write
through, nothing to do with `sync/`) also write the store and publish to the
listeners: status changes at once, progress at most once per unit per
`progress_interval` (a background flusher writes the last value a throttle held
back, so the final figure always lands).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from copy import copy
from typing import Any, TypeVar

from datatrace_tasks.exceptions import DuplicateUnitName, UnitAlreadyRunning, UnitNotFound
from datatrace_tasks.heartbeat import Heartbeat
from datatrace_tasks.settings import DataTraceSettings
from datatrace_tasks.state.engine import retry_unreachable
from datatrace_tasks.state.leases import LeaseChange
from datatrace_tasks.state.listeners import Silent, UnitListener
from datatrace_tasks.state.pause import PauseFlags
from datatrace_tasks.state.store import Store
from datatrace_tasks.state.units import EventKind, TaskUnit, UnitStatus
from datatrace_tasks.urls import error_text

log = logging.getLogger("datatrace")
T = TypeVar("T")

_Key = tuple[str, str]


class UnitCache:
    """Keeps a sync task's units consistent in memory, the store and the listeners.

    Args:
        store: the state store; default from `DATATRACE_DATABASE_URL` (or embedded SQLite).
        monitor: where unit changes are published (nowhere by default).
        progress_interval: seconds between two progress writes of one unit.

    Example:
        >>> cache = UnitCache(Store("sqlite:///state.db"))
        >>> task_id = cache.create_task("copy", ["users", "orders"])
        >>> cache.write_unit_status(task_id, "users", UnitStatus.RUNNING).status
        <UnitStatus.RUNNING: 'running'>
    """

    def __init__(
        self,
        store: Store | None = None,
        *,
        monitor: UnitListener | None = None,
        progress_interval: float | None = None,
    ) -> None:
        settings = DataTraceSettings()
        self.store = store if store is not None else Store(settings.store_url())
        self.monitor: UnitListener = monitor if monitor is not None else self._default_monitor()
        self.progress_interval = (
            settings.progress_interval if progress_interval is None else progress_interval
        )
        self.lease_seconds = settings.lease_seconds
        self.store_retry_seconds = settings.store_retry_seconds
        self._lock = threading.RLock()
        self._units: dict[str, dict[str, TaskUnit]] = {}
        self._extra_monitors: list[UnitListener] = []
        self._write_locks: dict[_Key, threading.Lock] = {}
        self._last_write: dict[_Key, float] = {}
        self._dirty: set[_Key] = set()
        self.pauses = PauseFlags(self.store, self.progress_interval, self._ask_store)
        self._flusher: Heartbeat | None = None

    def _default_monitor(self) -> UnitListener:
        return Silent()  # nobody listens unless told

    # -- 1. units ------------------------------------------------------------------------

    def create_task(
        self,
        name: str,
        units: Sequence[str] | Sequence[tuple[str, str]],
        **options: Any,
    ) -> str:
        """A new task with units (ids or `(id, name)` pairs); options as `Store.create_task`."""
        pairs = [(u, u) if isinstance(u, str) else (u[0], u[1]) for u in units]
        task_id = self.store.create_task(name=name, units=pairs, **options)
        self.load_task_units_from_db(task_id)
        return task_id

    def load_task_units_from_db(self, task_id: str) -> list[TaskUnit]:
        """Load a task's units from the store into the cache and the listeners (TaskNotFound)."""
        units = self.store.load_units(task_id)
        with self._lock:
            self._units[task_id] = {u.id: u for u in units}
        copies = [copy(u) for u in units]
        for unit in copies:
            self._publish(task_id, unit)
        return [copy(u) for u in copies]

    def init_task_units(self, task_id: str, unit_names: Sequence[str]) -> list[TaskUnit]:
        """Create `pending` units for a new task in memory only.

        Raises:
            DuplicateUnitName: a name appears twice.
        """
        dupes = sorted(n for n, count in Counter(unit_names).items() if count > 1)
        if dupes:
            raise DuplicateUnitName(f"duplicate unit names: {', '.join(map(repr, dupes))}")
        units = {name: TaskUnit(id=name, name=name) for name in unit_names}
        with self._lock:
            self._units[task_id] = units
        return [copy(u) for u in units.values()]

    def get_task_units(self, task_id: str) -> list[TaskUnit]:
        """Copies of a task's units from the cache (loaded from the store on a miss)."""
        with self._lock:
            cached = self._units.get(task_id)
            if cached is not None:
                return [copy(u) for u in cached.values()]
        return self.load_task_units_from_db(task_id)

    def get_unit(self, task_id: str, unit_id: str) -> TaskUnit:
        """A copy of one unit (not of all: a task may have thousands); UnitNotFound if none."""
        return self._snapshot(task_id, unit_id)

    def clear_task_units(self, task_id: str) -> None:
        """Forget a task's units in memory (the store keeps them)."""
        with self._lock:
            self._units.pop(task_id, None)
            self.pauses.forget(task_id)
            for key in [k for k in self._dirty if k[0] == task_id]:
                self._dirty.discard(key)
        self.monitor.forget(task_id)

    # -- 2. status -----------------------------------------------------------------------

    def update_unit_status(self, task_id: str, unit_id: str, status: UnitStatus) -> TaskUnit:
        """Set a unit's status in memory."""
        with self._lock:
            unit = self._cached(task_id, unit_id)
            unit.status = UnitStatus(status)
            _settle(unit)
            return copy(unit)

    def update_unit_status_with_sync(
        self,
        task_id: str,
        unit_id: str,
        status: UnitStatus,
        *,
        error_message: str | None = None,
        attempts: int | None = None,
        lease: LeaseChange | None = None,
    ) -> TaskUnit:
        """Set a unit's status in memory, the store (with its latest progress) and the monitor.

        Status changes are never throttled: each one is written and logged as an event.
        A `lease` is taken or given back in the same write; a lease another runner
        holds raises UnitAlreadyRunning and leaves the unit as it was.
        """
        with self._lock:
            unit = self._cached(task_id, unit_id)
            before = copy(unit)
            unit.status = UnitStatus(status)
            if error_message is not None:
                unit.error_message = error_message
            if attempts is not None:
                unit.attempts = attempts
            _settle(unit)
        try:
            self._write(task_id, unit_id, event=EventKind.STATUS, status=True, lease=lease)
        except UnitAlreadyRunning:
            with self._lock:
                self._units[task_id][unit_id] = before
            raise
        snapshot = self._snapshot(task_id, unit_id)
        self._publish(task_id, snapshot)
        return snapshot

    # -- 3. progress ---------------------------------------------------------------------

    def update_unit_progress(
        self, task_id: str, unit_id: str, processed: int, total: int | None = None
    ) -> TaskUnit:
        """Set a unit's processed (and optionally total) records in memory."""
        with self._lock:
            unit = self._cached(task_id, unit_id)
            unit.processed_records = int(processed)
            if total is not None:
                unit.total_records = int(total)
            return copy(unit)

    def update_unit_progress_with_sync(
        self,
        task_id: str,
        unit_id: str,
        processed: int,
        total: int | None = None,
        *,
        checkpoint: Mapping[str, Any] | None = None,
        force: bool = False,
    ) -> TaskUnit:
        """Set progress in memory and the monitor; write the store at most once per interval.

        A `checkpoint` is saved on every call (one small UPDATE, no event), so a crash
        loses at most the batch that committed before its checkpoint did. The progress
        event is throttled; a held-back value is written by the flusher within an interval.
        """
        key = (task_id, unit_id)
        with self._lock:
            unit = self._cached(task_id, unit_id)
            unit.processed_records = int(processed)
            if total is not None:
                unit.total_records = int(total)
            if checkpoint is not None:
                unit.checkpoint = dict(checkpoint)
            due = force or time.monotonic() - self._last_write.get(key, 0.0) >= (
                self.progress_interval
            )
            if not due:
                self._dirty.add(key)
                self._ensure_flusher()
            snapshot = copy(unit)
        if due:
            self._write(task_id, unit_id, event=EventKind.PROGRESS)
        elif checkpoint is not None:
            self._write(task_id, unit_id, event=None)
        self._publish(task_id, snapshot)
        return snapshot

    def flush_progress(self, task_id: str | None = None) -> int:
        """Write every progress value the throttle held back; returns how many units."""
        with self._lock:
            keys = [k for k in self._dirty if task_id is None or k[0] == task_id]
        return self._flush(keys)

    # -- 4. errors -----------------------------------------------------------------------

    def fail_unit(self, task_id: str, unit_id: str, error: str | BaseException) -> TaskUnit:
        """Mark a unit failed in memory, keeping the error message."""
        with self._lock:
            unit = self._cached(task_id, unit_id)
            unit.status = UnitStatus.FAILED
            unit.error_message = error_text(error)
            return copy(unit)

    def fail_unit_with_sync(
        self, task_id: str, unit_id: str, error: str | BaseException
    ) -> TaskUnit:
        """Mark a unit failed in memory, the store and the monitor."""
        return self.update_unit_status_with_sync(
            task_id, unit_id, UnitStatus.FAILED, error_message=error_text(error)
        )

    def record_verification(self, task_id: str, unit_id: str, result: Mapping[str, Any]) -> None:
        """Keep a unit's verification result (counts, checksums) in the store."""
        self.store.write_unit(task_id, unit_id, verification=result)

    # -- pause ---------------------------------------------------------------------------

    def request_pause(self, task_id: str) -> None:
        """Ask every running unit of the task to stop at its next batch boundary."""
        self.pauses.request(task_id)

    def clear_pause(self, task_id: str) -> None:
        """Lower the pause flag (a new run of the task starts)."""
        self.pauses.clear(task_id)

    def pause_requested(self, task_id: str) -> bool:
        """Whether the task should pause: asked here, or (checked once per interval) elsewhere."""
        return self.pauses.requested(task_id)

    @contextmanager
    def listening(self, listener: UnitListener | None) -> Iterator[None]:
        """Publish to one more listener while the block runs (a run's own monitor)."""
        extra = listener if listener not in (None, self.monitor) else None
        if extra is not None:
            self._extra_monitors.append(extra)
        try:
            yield
        finally:
            if extra is not None:
                self._extra_monitors.remove(extra)

    # -- internals -----------------------------------------------------------------------

    def _cached(self, task_id: str, unit_id: str) -> TaskUnit:
        units = self._units.get(task_id)
        if units is None:
            loaded = self.store.load_units(task_id)
            units = self._units[task_id] = {u.id: u for u in loaded}
        try:
            return units[unit_id]
        except KeyError:
            raise UnitNotFound(task_id, unit_id) from None

    def _snapshot(self, task_id: str, unit_id: str) -> TaskUnit:
        with self._lock:
            return copy(self._cached(task_id, unit_id))

    def _write(
        self,
        task_id: str,
        unit_id: str,
        *,
        event: EventKind | None,
        status: bool = False,
        lease: LeaseChange | None = None,
    ) -> None:
        """Write the unit's current memory state; one writer per unit keeps writes in order."""
        key = (task_id, unit_id)
        with self._lock:
            lock = self._write_locks.setdefault(key, threading.Lock())
        with lock:
            with self._lock:
                unit = copy(self._cached(task_id, unit_id))
                if event is not None:
                    self._dirty.discard(key)
                    self._last_write[key] = time.monotonic()
            self._retrying(
                lambda: self.store.write_unit(
                    task_id,
                    unit_id,
                    status=unit.status if status else None,
                    processed=unit.processed_records,
                    total=unit.total_records,
                    checkpoint=unit.checkpoint,
                    error_message=unit.error_message if status else None,
                    attempts=unit.attempts if status else None,
                    event=event,
                    lease=lease,
                ),
                what=f"unit {unit_id!r}",
            )

    def _ask_store(self, ask: Callable[[], bool]) -> bool:
        return self._retrying(ask, what="the pause flag")

    def _retrying(self, write: Callable[[], T], *, what: str) -> T:
        return retry_unreachable(write, seconds=self.store_retry_seconds, what=what)

    def _publish(self, task_id: str, unit: TaskUnit) -> None:
        """Tell every listener; one that fails is logged, never fails the unit."""
        for monitor in (self.monitor, *self._extra_monitors):
            try:
                monitor.publish(task_id, unit)
            except Exception:
                log.exception("a listener failed on unit %r; the unit goes on", unit.id)

    def _ensure_flusher(self) -> None:
        # Called with self._lock held.
        if self._flusher is not None and self._flusher.alive:
            return
        self._flusher = Heartbeat(
            max(self.progress_interval, 0.05), self._flush_due, name="datatrace-flusher"
        ).start()

    def _flush_due(self) -> bool:
        """Write the held-back progress whose interval has passed; False once none is left."""
        with self._lock:
            now = time.monotonic()
            due = [
                k
                for k in self._dirty
                if now - self._last_write.get(k, 0.0) >= self.progress_interval
            ]
        self._flush(due)
        with self._lock:
            if self._dirty:
                return True
            self._flusher = None  # under the lock: a value held back from now on starts anew
            return False

    def _flush(self, keys: list[_Key]) -> int:
        written = 0
        for t, u in keys:
            try:
                self._write(t, u, event=EventKind.PROGRESS)
                written += 1
            except Exception:  # the store may be briefly down: keep it dirty, try again
                log.exception("could not flush progress of unit %r", u)
                with self._lock:
                    self._dirty.add((t, u))
        return written

    # plain names for the write-through operations
    write_unit_status = update_unit_status_with_sync
    write_unit_progress = update_unit_progress_with_sync
    write_unit_failure = fail_unit_with_sync


def _settle(unit: TaskUnit) -> None:
    """A completed unit's total is at least what it processed (the estimate may be low)."""
    if unit.status is UnitStatus.COMPLETED and unit.processed_records > unit.total_records:
        unit.total_records = unit.processed_records
