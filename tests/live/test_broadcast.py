"""EventBroadcaster: in-order delivery over out-of-order commits, replay and cut-off."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from datatrace_tasks.exceptions import SubscriberCutOff
from datatrace_tasks.live.broadcast import EventBroadcaster
from datatrace_tasks.state.models import TaskUnitEventRow, utcnow
from datatrace_tasks.state.store import Store, UnitEvent


class FakeClock:
    """A monotonic clock the test moves by hand, so grace periods need no sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _event(task_id: str = "t", *, id: int | None = None) -> TaskUnitEventRow:
    return TaskUnitEventRow(
        id=id,
        task_id=task_id,
        unit_id="u",
        kind="progress",
        status="running",
        processed_records=1,
        total_records=2,
        message="",
        created_at=utcnow(),
    )


def _insert(store: Store, count: int = 1, *, id: int | None = None) -> list[int]:
    with store.session() as s:
        rows = [_event(id=id) for _ in range(count)]
        s.add_all(rows)
        s.flush()
        return [r.id for r in rows]


async def _next(events: AsyncIterator[UnitEvent]) -> UnitEvent:
    return await asyncio.wait_for(anext(events), timeout=10)


@asynccontextmanager
async def running(store: Store, **options: Any) -> AsyncIterator[EventBroadcaster]:
    """A started EventBroadcaster over `store`, stopped on the way out.

    It polls only when the test says (`poll_once`), on a FakeClock unless `clock` is given.
    """
    options.setdefault("clock", FakeClock())
    broadcaster = EventBroadcaster(store, poll_interval=3600, **options)
    await broadcaster.start()
    try:
        yield broadcaster
    finally:
        await broadcaster.stop()


class TestOrder:
    """Events reach subscribers in id order even when commits are not."""

    def test_late_commit_of_smaller_id_is_delivered_first(self, store: Store) -> None:
        """An id committed after a larger one is neither skipped nor delivered out of order."""
        if store.engine.dialect.name == "sqlite":
            pytest.skip("SQLite serializes writers: ids always commit in order")

        async def scenario() -> list[int]:
            async with running(store) as broadcaster:
                got: list[int] = []
                with broadcaster.subscribe(task_id=None, last_event_id=None) as sub:
                    events = aiter(sub)
                    held = store.session()
                    session = held.__enter__()
                    row = _event()
                    session.add(row)
                    session.flush()  # id taken, not committed yet
                    later = await asyncio.to_thread(_insert, store)
                    assert later[0] > row.id
                    assert await broadcaster.poll_once() == 0  # waits for the smaller id
                    held.__exit__(None, None, None)  # commit
                    assert await broadcaster.poll_once() == 2
                    got = [(await _next(events)).id, (await _next(events)).id]
                    assert got == [row.id, later[0]]
            return got

        asyncio.run(scenario())

    def test_gap_that_never_fills_is_skipped_after_grace(self, store: Store) -> None:
        """An id that never commits (a rollback) holds later events only for the grace period."""

        async def scenario() -> None:
            clock = FakeClock()
            async with running(store, clock=clock, grace_seconds=2.0) as broadcaster:
                with broadcaster.subscribe(task_id=None, last_event_id=None) as sub:
                    events = aiter(sub)
                    (first,) = await asyncio.to_thread(_insert, store)
                    (after_gap,) = await asyncio.to_thread(_insert, store, id=first + 2)
                    assert await broadcaster.poll_once() == 1
                    assert (await _next(events)).id == first
                    assert await broadcaster.poll_once() == 0
                    clock.now += 2.5
                    assert await broadcaster.poll_once() == 1
                    assert (await _next(events)).id == after_gap
                    assert broadcaster.last_event_id == after_gap

        asyncio.run(scenario())


class TestReplayAndCutOff:
    """Subscribers resume from an id, and a subscriber that stops reading is dropped."""

    def test_replay_then_live_without_duplicates(self, store: Store) -> None:
        """A subscriber from id 0 gets the stored events, then new ones, each exactly once."""

        async def scenario() -> None:
            old = await asyncio.to_thread(_insert, store, 5)
            async with running(store) as broadcaster:
                with broadcaster.subscribe(task_id="t", last_event_id=old[1]) as sub:
                    events = aiter(sub)
                    new = await asyncio.to_thread(_insert, store, 3)
                    await broadcaster.poll_once()
                    got = [(await _next(events)).id for _ in range(6)]
                    assert got == old[2:] + new

        asyncio.run(scenario())

    def test_subscriber_that_stops_reading_is_cut_off(self, store: Store) -> None:
        """A full queue drops its subscriber (bounded memory); a replay then recovers all."""

        async def scenario() -> None:
            async with running(store, queue_size=3) as broadcaster:
                start = broadcaster.last_event_id
                with broadcaster.subscribe(task_id=None, last_event_id=None) as sub:
                    ids = await asyncio.to_thread(_insert, store, 5)
                    await broadcaster.poll_once()
                    assert broadcaster.subscriber_count == 0
                    with pytest.raises(SubscriberCutOff):
                        await _next(aiter(sub))
                with broadcaster.subscribe(task_id=None, last_event_id=start) as again:
                    events = aiter(again)
                    assert [(await _next(events)).id for _ in ids] == ids

        asyncio.run(scenario())

    def test_batches_group_what_is_ready(self, store: Store) -> None:
        """The replay comes as one batch, then all events of one poll as the next one."""

        async def scenario() -> None:
            old = await asyncio.to_thread(_insert, store, 4)
            async with running(store) as broadcaster:
                with broadcaster.subscribe(task_id="t", last_event_id=old[0]) as sub:
                    batches = sub.batches()
                    new = await asyncio.to_thread(_insert, store, 3)
                    await broadcaster.poll_once()
                    first = await asyncio.wait_for(anext(batches), timeout=10)
                    second = await asyncio.wait_for(anext(batches), timeout=10)
                    assert [e.id for e in first] == old[1:]
                    assert [e.id for e in second] == new

        asyncio.run(scenario())
