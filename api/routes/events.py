"""Server-sent event streams: every task's events, or one task's.

Each message carries the event log id as `id:`, so a browser reconnecting sends it
back as `Last-Event-ID` and gets exactly what it missed. Events come from the
process's one poller (`EventBroadcaster`); a slow client is cut off, by its full
queue or by the send timeout, and replays from the store when it comes back.

A task's stream opened with `?rollup=true` also carries the task's figures computed
by the server (`datatrace_tasks.live.rollup`): a `rollup` event, without an id so that
it never moves the client's `Last-Event-ID`, on connect and after each batch of events.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import lru_cache, partial
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Header, Query
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.deps import BroadcasterDep, SettingsDep, StoreDep, TaskIdDep
from api.schemas import ErrorOut, RollupEventOut
from datatrace_tasks.exceptions import SubscriberCutOff
from datatrace_tasks.live.broadcast import EventBroadcaster
from datatrace_tasks.live.rollup import task_progress
from datatrace_tasks.settings import ApiSettings
from datatrace_tasks.state.store import Store, UnitEvent

router = APIRouter(prefix="/api", tags=["events"])
log = logging.getLogger("datatrace.api")

_STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": (
            "`text/event-stream`. Events `unit` and `task` carry the event as JSON with the "
            "log id as `id:`; `heartbeat` (no id) is sent on connect and when idle. A task's "
            "stream with `?rollup=true` also sends `rollup` (no id; `RollupEventOut` as JSON: "
            "the task's rows/s and ETA, computed by the server) on connect and after each "
            "batch of events."
        ),
        "content": {"text/event-stream": {}},
    }
}
_ROLLUP_TASKS = 1024  # tasks whose latest rollup message one process keeps


def parse_last_event_id(header: str | None, query: str | None) -> int | None:
    """The id to resume after: the header (a browser's reconnect) wins over the query.

    Anything not a non-negative integer is a fresh start, never an error.
    """
    raw = header if header is not None and header.strip() else query
    if raw is None:
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        return None
    return value if value >= 0 else None


def _resume_after(
    last_event_id_header: str | None = Header(default=None, alias="Last-Event-ID"),
    last_event_id: str | None = Query(
        default=None, description="Resume after this event id (the header wins)."
    ),
) -> int | None:
    return parse_last_event_id(last_event_id_header, last_event_id)


ResumeAfterDep = Annotated[int | None, Depends(_resume_after)]


@lru_cache(maxsize=4096)
def _message(event: UnitEvent, retry_ms: int) -> bytes:
    """The encoded message of one event; every client of this process shares it."""
    kind = "unit" if event.unit_id is not None else "task"
    return ServerSentEvent(
        data=json.dumps(event.to_dict()), event=kind, id=str(event.id), retry=retry_ms
    ).encode()


def _rollup_message(store: Store, task_id: str, watermark: int) -> bytes:
    """The encoded `rollup` message of a task now; empty when the store cannot say."""
    try:
        progress = task_progress(store, task_id)
    except Exception as exc:  # the store may be briefly down: the next batch tries again
        log.warning("could not compute the rollup of task %s (%s)", task_id, exc)
        return b""
    data = RollupEventOut.model_validate(
        {
            "task_id": task_id,
            "last_event_id": watermark,
            "rollup": progress.rollup.to_dict(),
            "units": [rate.to_dict() for rate in progress.running_rates()],
        }
    )
    return ServerSentEvent(data=data.model_dump_json(), event="rollup").encode()


class _Rollups:
    """The `rollup` message of each task, computed once per watermark of the broadcaster
    and shared by every stream of the process, as the events' own messages are."""

    def __init__(self) -> None:
        self._latest: dict[str, tuple[int, asyncio.Future[bytes]]] = {}

    async def message(self, broadcaster: EventBroadcaster, task_id: str) -> bytes:
        watermark = broadcaster.last_event_id
        cached = self._latest.pop(task_id, None)
        if cached is None or cached[0] != watermark:
            work = partial(_rollup_message, broadcaster.store, task_id, watermark)
            cached = (watermark, asyncio.ensure_future(anyio.to_thread.run_sync(work)))
        self._latest[task_id] = cached  # the newest last: the oldest task goes first
        if len(self._latest) > _ROLLUP_TASKS:
            del self._latest[next(iter(self._latest))]
        return await asyncio.shield(cached[1])  # a client leaving does not cancel the others'


_ROLLUPS: weakref.WeakKeyDictionary[EventBroadcaster, _Rollups] = weakref.WeakKeyDictionary()


def _heartbeat(broadcaster: EventBroadcaster) -> ServerSentEvent:
    data = {"at": datetime.now(UTC).isoformat(), "last_event_id": broadcaster.last_event_id}
    return ServerSentEvent(data=json.dumps(data), event="heartbeat")


def _stream(
    broadcaster: EventBroadcaster,
    settings: ApiSettings,
    *,
    task_id: str | None,
    last_event_id: int | None,
    rollup: bool = False,
) -> EventSourceResponse:
    rollups = _ROLLUPS.setdefault(broadcaster, _Rollups())

    async def figures() -> bytes:
        if not rollup or task_id is None:
            return b""
        return await rollups.message(broadcaster, task_id)

    async def messages() -> AsyncIterator[ServerSentEvent | bytes]:
        with broadcaster.subscribe(task_id=task_id, last_event_id=last_event_id) as events:
            hello = _heartbeat(broadcaster)
            hello.retry = settings.retry_ms
            yield hello.encode() + await figures()
            try:
                async for batch in events.batches():
                    sent = b"".join(_message(event, settings.retry_ms) for event in batch)
                    yield sent + await figures()
            except SubscriberCutOff:
                return  # the browser reconnects with its Last-Event-ID and replays

    return EventSourceResponse(
        messages(),
        ping=settings.ping_seconds,
        ping_message_factory=lambda: _heartbeat(broadcaster),
        send_timeout=settings.send_timeout,
    )


@router.get("/events", responses=_STREAM_DOC, summary="Stream every task's events")
async def all_events(
    broadcaster: BroadcasterDep, settings: SettingsDep, last_event_id: ResumeAfterDep
) -> EventSourceResponse:
    """Unit and task events of every task: missed ones first (after `Last-Event-ID`), then
    live ones, in id order, with no gap and no duplicate."""
    return _stream(broadcaster, settings, task_id=None, last_event_id=last_event_id)


@router.get(
    "/tasks/{task_id}/events",
    responses={**_STREAM_DOC, 404: {"model": ErrorOut}},
    summary="Stream one task's events",
)
async def task_events(
    task_id: TaskIdDep,
    store: StoreDep,
    broadcaster: BroadcasterDep,
    settings: SettingsDep,
    last_event_id: ResumeAfterDep,
    rollup: bool = Query(
        default=False,
        description="Also send `rollup` events: the task's rows/s and ETA, from the server.",
    ),
) -> EventSourceResponse:
    """One task's unit and task events, as `/api/events` but filtered; 404 if unknown."""
    await anyio.to_thread.run_sync(store.get_task, task_id)  # TaskNotFound -> 404
    return _stream(
        broadcaster, settings, task_id=task_id, last_event_id=last_event_id, rollup=rollup
    )
