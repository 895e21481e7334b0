"""UnitRunBook: a task's unit runs read from the log once, then kept current from the
events the broadcaster delivers, agreeing with a full read of the log every time."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from datatrace_tasks.live.rollup import unit_runs
from datatrace_tasks.live.runbook import KEEP
from datatrace_tasks.orchestration.manager import TaskManager
from datatrace_tasks.state.store import Store
from datatrace_tasks.state.units import UnitStatus
from tests.live.test_broadcast import FakeClock, running


@contextmanager
def event_reads(store: Store) -> Iterator[list[str]]:
    """The statements that read the event log while the block runs."""
    seen: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if "task_unit_events" in statement and statement.lstrip().upper().startswith("SELECT"):
            seen.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", count)


def _progress(manager: TaskManager, task_id: str, unit: str, done: range) -> None:
    for rows in done:
        manager.update_unit_progress_with_sync(task_id, unit, rows, force=True)


def test_the_book_agrees_with_the_log_and_reads_it_once(store: Store, manager: TaskManager) -> None:
    """After the first ask, later asks read no event row, and after every delivered
    event (progress, a second run of a unit, a completion) they equal a full read."""
    task_id = manager.create_task("book", [("a", "a"), ("b", "b")])
    manager.update_unit_status_with_sync(task_id, "a", UnitStatus.RUNNING)
    _progress(manager, task_id, "a", range(100, 501, 100))

    async def scenario() -> None:
        clock = FakeClock()
        async with running(store, clock=clock, grace_seconds=0) as broadcaster:
            book = broadcaster.unit_runs
            assert book.runs(task_id) == unit_runs(store, task_id)
            steps = [
                lambda: _progress(manager, task_id, "a", range(600, 1001, 100)),
                lambda: manager.update_unit_status_with_sync(task_id, "b", UnitStatus.RUNNING),
                lambda: _progress(manager, task_id, "b", range(50, 201, 50)),
                lambda: manager.update_unit_status_with_sync(task_id, "a", UnitStatus.FAILED),
                lambda: manager.update_unit_status_with_sync(task_id, "a", UnitStatus.RUNNING),
                lambda: _progress(manager, task_id, "a", range(10, 31, 10)),
                lambda: manager.update_unit_status_with_sync(task_id, "b", UnitStatus.COMPLETED),
            ]
            for step in steps:
                await asyncio.to_thread(step)
                clock.now += 1
                await broadcaster.poll_once()
                with event_reads(store) as reads:
                    kept = await asyncio.to_thread(book.runs, task_id)
                assert reads == []
                assert kept == unit_runs(store, task_id)
            assert kept["a"].elapsed_seconds is not None  # the second run of `a` only

    asyncio.run(scenario())


def test_a_long_run_keeps_few_samples_and_exact_figures(store: Store, manager: TaskManager) -> None:
    """A unit with thousands of progress events: the book keeps at most KEEP of them,
    its elapsed time and average equal the full read's, its chart has at most 40 points."""
    task_id = manager.create_task("long", [("a", "a")])
    manager.update_unit_status_with_sync(task_id, "a", UnitStatus.RUNNING)

    async def scenario() -> None:
        async with running(store, grace_seconds=0, batch=10_000) as broadcaster:
            book = broadcaster.unit_runs
            book.runs(task_id)  # in the book from its start
            await asyncio.to_thread(_progress, manager, task_id, "a", range(1, 3001))
            await broadcaster.poll_once()
            kept, full = book.runs(task_id)["a"], unit_runs(store, task_id)["a"]
            samples = book._tasks[task_id].runs["a"]
            assert len(samples) <= KEEP
            assert (kept.elapsed_seconds, kept.average_rows_per_second) == (
                full.elapsed_seconds,
                full.average_rows_per_second,
            )
            assert 0 < len(kept.rate_history) <= 40

    asyncio.run(scenario())
