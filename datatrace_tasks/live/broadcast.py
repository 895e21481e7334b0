"""EventBroadcaster: one poller per process over the event log, fanned out to subscribers.

Jobs usually run in another process (a Prefect worker) or on another host, so the
side-app cannot rely on in-memory publishing: it reads `task_unit_events`, whose ids
only grow, and hands each new event to every subscriber's bounded asyncio queue. A
subscriber resuming from a `Last-Event-ID` first replays the missed events from the
store, then continues on its queue; the hand-over is exact because the poller delivers
events in strictly increasing id order and never delivers an id below its watermark.

Out-of-order commits: on MySQL/MariaDB and PostgreSQL an autoincrement id is taken
when a row is inserted but becomes visible only at commit, so under concurrent writers
id 11 may be visible before id 10. A poller that remembered only the highest id seen
would skip 10 for good. This one keeps a watermark (`last_event_id`): every id at or
below it has been delivered or given up on. Each poll re-reads everything above the
watermark; an event is delivered only when it is the next id, or when it has waited
`grace_seconds` behind a gap (a rolled-back insert leaves a gap that never fills). So a
late-committing id is delivered in order, and a client's `Last-Event-ID` (the highest
id it saw) is always a complete prefix of the log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial

import anyio
from sqlalchemy import func, select

from datatrace_tasks.exceptions import SubscriberCutOff
from datatrace_tasks.live.runbook import UnitRunBook
from datatrace_tasks.state.models import TaskUnitEventRow
from datatrace_tasks.state.store import Store, UnitEvent

__all__ = ["EventBroadcaster", "Subscription"]

log = logging.getLogger("datatrace.broadcast")

_STARTUP_LOOKBACK = 200  # ids re-read at start, so an insert in flight then is not lost


class Subscription:
    """One subscriber's view: where it joined, and its events as an async iterator.

    Raises (while iterating):
        SubscriberCutOff: the subscriber let its queue fill up, or the poller stopped;
            the client should reconnect with its last event id and will miss nothing.
    """

    def __init__(
        self, broadcaster: EventBroadcaster, sub: _Subscriber, last_event_id: int | None
    ) -> None:
        self._batches = broadcaster._batches(sub, last_event_id)
        self._events = broadcaster._events(self._batches)
        self.start = sub.start

    def __aiter__(self) -> AsyncIterator[UnitEvent]:
        return self._events

    def batches(self) -> AsyncIterator[list[UnitEvent]]:
        """The same events, each time with all that are ready at once.

        A stream writes one batch in one send, so a poll that found several events
        costs each client one write, not several. Iterate either this or the
        subscription itself, not both.
        """
        return self._batches


@dataclass(eq=False)
class _Subscriber:
    task_id: str | None
    start: int  # the watermark when it joined: replay covers ids up to here
    queue: asyncio.Queue[UnitEvent | None]
    cut_off: bool = False


@dataclass
class _PollState:
    pending: dict[int, UnitEvent] = field(default_factory=dict)
    first_seen: dict[int, float] = field(default_factory=dict)


class EventBroadcaster:
    """Polls the store's event log and fans new events out to subscribers, in id order.

    Start it inside the app's event loop (`await start()`), stop it on shutdown.

    Args:
        store: the state store to read.
        poll_interval: seconds between two reads of the log when it is idle.
        grace_seconds: how long an event waits behind a gap in the ids before the gap
            is taken for a rolled-back insert and skipped.
        queue_size: events buffered per subscriber; one that lets its queue fill is
            cut off (it reconnects and replays from the store), so memory stays bounded.
        batch: events read per query.
        clock: monotonic clock, replaceable to test the grace logic.

    Example:
        >>> broadcaster = EventBroadcaster(store)
        >>> await broadcaster.start()
        >>> with broadcaster.subscribe(task_id=None, last_event_id=41) as events:
        ...     async for event in events:
        ...         print(event.id)
    """

    def __init__(
        self,
        store: Store,
        *,
        poll_interval: float = 0.2,
        grace_seconds: float = 2.0,
        queue_size: int = 1000,
        batch: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.poll_interval = poll_interval
        self.grace_seconds = grace_seconds
        self.queue_size = queue_size
        self.batch = batch
        self._clock = clock
        self._floor = 0
        self._state = _PollState()
        self._subscribers: set[_Subscriber] = set()
        self._task: asyncio.Task[None] | None = None
        self.unit_runs = UnitRunBook(store, lambda: self._floor)

    @property
    def last_event_id(self) -> int:
        """The watermark: every event with this id or lower has been delivered."""
        return self._floor

    @property
    def subscriber_count(self) -> int:
        """How many subscribers are attached now."""
        return len(self._subscribers)

    async def start(self) -> None:
        """Read the log's current end, then poll in a background task."""
        if self._task is not None:
            return
        newest = await anyio.to_thread.run_sync(self._max_id)
        self._floor = max(0, newest - _STARTUP_LOOKBACK)
        await self.poll_once()
        self._task = asyncio.create_task(self._run(), name="datatrace-event-poller")

    async def stop(self) -> None:
        """Stop polling and end every subscriber's stream."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        for sub in list(self._subscribers):
            self._drop(sub)

    async def poll_once(self) -> int:
        """Read the log above the watermark once and deliver what is final; returns count."""
        rows = await anyio.to_thread.run_sync(
            partial(self.store.events_after, self._floor, limit=self.batch)
        )
        return self._advance(rows)

    @contextmanager
    def subscribe(
        self, *, task_id: str | None, last_event_id: int | None
    ) -> Iterator[Subscription]:
        """Attach a subscriber now; iterate the result for its events, in id order.

        Missed events (above `last_event_id`) come from the store first, then live ones.
        The subscriber is attached before the replay reads, so nothing committed in
        between is missed, and detached when the context exits.

        Args:
            task_id: only this task's events; None for every task.
            last_event_id: the highest id the client already has; None for live only.
        """
        sub = _Subscriber(task_id, self._floor, asyncio.Queue(self.queue_size))
        self._subscribers.add(sub)
        try:
            yield Subscription(self, sub, last_event_id)
        finally:
            self._subscribers.discard(sub)

    @staticmethod
    async def _events(batches: AsyncIterator[list[UnitEvent]]) -> AsyncIterator[UnitEvent]:
        async for batch in batches:
            for event in batch:
                yield event

    async def _batches(
        self, sub: _Subscriber, last_event_id: int | None
    ) -> AsyncIterator[list[UnitEvent]]:
        last = sub.start
        if last_event_id is not None and last_event_id < sub.start:
            page: list[UnitEvent] = []
            async for event in self._replay(sub.task_id, last_event_id, sub.start):
                page.append(event)
                if len(page) >= self.batch:
                    yield page
                    page = []
            if page:
                yield page
        elif last_event_id is not None:
            last = last_event_id  # a client ahead of this replica's watermark
        while True:
            item = await sub.queue.get()
            batch: list[UnitEvent] = []
            while item is not None:
                if item.id > last:
                    last = item.id
                    batch.append(item)
                if sub.queue.empty():
                    break
                item = sub.queue.get_nowait()
            if batch:
                yield batch
            if item is None:
                raise SubscriberCutOff("the event stream dropped this subscriber")

    async def _replay(self, task_id: str | None, after: int, upto: int) -> AsyncIterator[UnitEvent]:
        """Events in `(after, upto]` from the store, page by page."""
        while after < upto:
            page = await anyio.to_thread.run_sync(
                partial(self.store.events_after, after, task_id=task_id, limit=self.batch)
            )
            for event in page:
                if event.id > upto:
                    return
                yield event
                after = event.id
            if len(page) < self.batch:
                return

    def _advance(self, rows: list[UnitEvent]) -> int:
        """Deliver events that are final, in id order, and move the watermark past them.

        Runs in the event loop without awaiting, so it is atomic for subscribers joining.
        """
        now = self._clock()
        state = self._state
        for event in rows:
            if event.id > self._floor and event.id not in state.pending:
                state.pending[event.id] = event
                state.first_seen[event.id] = now
        delivered = 0
        while state.pending:
            smallest = min(state.pending)
            waited = now - state.first_seen[smallest]
            if smallest != self._floor + 1 and waited < self.grace_seconds:
                break  # a smaller id may still commit: wait for it (see module docstring)
            if smallest != self._floor + 1:
                log.debug("ids %d..%d never committed; skipping", self._floor + 1, smallest - 1)
            event = state.pending.pop(smallest)
            del state.first_seen[smallest]
            self._floor = smallest
            self._deliver(event)
            delivered += 1
        return delivered

    def _deliver(self, event: UnitEvent) -> None:
        self.unit_runs.observe(event)
        for sub in list(self._subscribers):
            if sub.task_id is not None and sub.task_id != event.task_id:
                continue
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                log.info("cutting off an event subscriber that stopped reading")
                self._drop(sub)

    def _drop(self, sub: _Subscriber) -> None:
        """Detach a subscriber and end its stream once it has read what is queued."""
        self._subscribers.discard(sub)
        sub.cut_off = True
        # Discard what it has not read (all newer than what it sent, so its Last-Event-ID
        # still marks a complete prefix) to make room for the end marker.
        while not sub.queue.empty():
            sub.queue.get_nowait()
        sub.queue.put_nowait(None)

    async def _run(self) -> None:
        # `start` has just polled: wait first, then read; a full batch is read again at once.
        failures, count = 0, 0
        while True:
            if count < self.batch:
                await asyncio.sleep(self.poll_interval * min(2**failures, 50))
            try:
                count = await self.poll_once()
                failures = 0
            except Exception as exc:  # the store may be briefly down: keep serving, retry
                failures += 1
                count = 0
                log.warning("reading the event log failed (%s); retrying", exc)

    def _max_id(self) -> int:
        with self.store.session() as s:
            return int(s.scalar(select(func.max(TaskUnitEventRow.id))) or 0)
