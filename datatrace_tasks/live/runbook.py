"""Each viewed task's unit runs, kept current from the events the broadcaster delivers.

A dashboard asks for a task's units every few seconds while it runs. Reading the
task's whole event log each time grows with the run (a unit writes a progress event
a second, for hours). The book reads a task's log once, up to the broadcaster's
watermark, and from then on folds in each event as the broadcaster delivers it, in
id order and exactly once, so a later ask reads no event row at all. A run keeps at
most `KEEP` samples (every other one dropped between its first and last, so its
elapsed time and average stay exact).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from datatrace_tasks.live.rollup import (
    HISTORY_POINTS,
    RunSamples,
    UnitRun,
    fold,
    read_runs,
    unit_run,
)
from datatrace_tasks.state.records import UnitEvent
from datatrace_tasks.state.store import Store

KEEP = 4 * HISTORY_POINTS
"""Samples kept per unit run: enough for HISTORY_POINTS chart points."""

TASKS = 100
"""Tasks kept in the book; the one asked for least recently goes first."""


@dataclass
class _Task:
    upto: int  # every event of the task up to this id is in `runs` (or in `held`)
    runs: RunSamples = field(default_factory=dict)
    loaded: threading.Event = field(default_factory=threading.Event)
    held: list[UnitEvent] = field(default_factory=list)  # delivered while loading


class UnitRunBook:
    """The unit runs of the tasks asked for, from one store and one event broadcaster.

    `observe` is called by the broadcaster for every event it delivers; `runs` from any
    thread (the side-app's routes run in a thread pool).
    """

    def __init__(self, store: Store, watermark: Callable[[], int]) -> None:
        self._store = store
        self._watermark = watermark
        self._tasks: OrderedDict[str, _Task] = OrderedDict()
        self._lock = threading.Lock()

    def observe(self, event: UnitEvent) -> None:
        """Fold in one delivered event (of a task in the book; others are read on demand)."""
        if event.unit_id is None:
            return
        with self._lock:
            task = self._tasks.get(event.task_id)
            if task is None or event.id <= task.upto:
                return
            if not task.loaded.is_set():
                task.held.append(event)
                return
            _apply(task, event)

    def runs(self, task_id: str) -> dict[str, UnitRun]:
        """Each unit's last run of `task_id`, as `rollup.unit_runs` reads it."""
        with self._lock:
            task = self._tasks.get(task_id)
            loading = task is None
            if task is None:
                # Every event up to the watermark is delivered: the store has them, and
                # `observe` holds what comes after until they are read.
                task = self._tasks[task_id] = _Task(upto=self._watermark())
                while len(self._tasks) > TASKS:
                    self._tasks.popitem(last=False)
            self._tasks.move_to_end(task_id)
        if loading:
            try:
                runs = read_runs(self._store, task_id, task.upto, keep=KEEP)
            except BaseException:
                with self._lock:  # the next ask reads it again
                    if self._tasks.get(task_id) is task:
                        del self._tasks[task_id]
                task.loaded.set()
                raise
            with self._lock:
                task.runs = runs
                for event in task.held:
                    _apply(task, event)
                task.held.clear()
                task.loaded.set()
        task.loaded.wait()
        if not loading and task_id not in self._tasks:
            return self.runs(task_id)  # its loading failed: ask again
        with self._lock:
            return {unit: unit_run(unit, list(samples)) for unit, samples in task.runs.items()}


def _apply(task: _Task, event: UnitEvent) -> None:
    assert event.unit_id is not None  # noqa: S101 - observe skips task events
    sample = (event.created_at, int(event.processed_records))
    fold(task.runs, event.unit_id, str(event.kind), event.status, sample, keep=KEEP)
    task.upto = event.id
