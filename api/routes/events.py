"""Server-sent event streams: every task's events, or one task's.

Each message carries the event log id as `id:`, so a browser reconnecting sends it
back as `Last-Event-ID` and gets exactly what it missed. Events come from the
process's one poller (`EventBroadcaster`); a slow client is cut off, by its full
queue or by the send timeout, and replays from the store when it comes back.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import anyio
from fastapi import APIRouter, Header, Query
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.deps import BroadcasterDep, SettingsDep, StoreDep, TaskIdDep
from api.schemas import ErrorOut
from api.settings import ApiSettings
from datatrace_tasks.live.broadcast import EventBroadcaster, SubscriberCutOff
from datatrace_tasks.state.store import UnitEvent

router = APIRouter(prefix="/api", tags=["events"])

_STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": (
            "`text/event-stream`. Events `unit` and `task` carry the event as JSON with the "
            "log id as `id:`; `heartbeat` (no id) is sent on connect and when idle."
        ),
        "content": {"text/event-stream": {}},
    }
}


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


@lru_cache(maxsize=4096)
def _message(event: UnitEvent, retry_ms: int) -> bytes:
    """The encoded message of one event; every client of this process shares it."""
    kind = "unit" if event.unit_id is not None else "task"
    return ServerSentEvent(
        data=json.dumps(event.to_dict()), event=kind, id=str(event.id), retry=retry_ms
    ).encode()


def _heartbeat(broadcaster: EventBroadcaster) -> ServerSentEvent:
    data = {"at": datetime.now(UTC).isoformat(), "last_event_id": broadcaster.last_event_id}
    return ServerSentEvent(data=json.dumps(data), event="heartbeat")


def _stream(
    broadcaster: EventBroadcaster,
    settings: ApiSettings,
    *,
    task_id: str | None,
    last_event_id: int | None,
) -> EventSourceResponse:
    async def messages() -> AsyncIterator[ServerSentEvent | bytes]:
        with broadcaster.subscribe(task_id=task_id, last_event_id=last_event_id) as events:
            hello = _heartbeat(broadcaster)
            hello.retry = settings.retry_ms
            yield hello
            try:
                async for batch in events.batches():
                    yield b"".join(_message(event, settings.retry_ms) for event in batch)
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
    broadcaster: BroadcasterDep,
    settings: SettingsDep,
    last_event_id_header: str | None = Header(default=None, alias="Last-Event-ID"),
    last_event_id: str | None = Query(
        default=None, description="Resume after this event id (the header wins)."
    ),
) -> EventSourceResponse:
    """Unit and task events of every task: missed ones first (after `Last-Event-ID`), then
    live ones, in id order, with no gap and no duplicate."""
    return _stream(
        broadcaster,
        settings,
        task_id=None,
        last_event_id=parse_last_event_id(last_event_id_header, last_event_id),
    )


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
    last_event_id_header: str | None = Header(default=None, alias="Last-Event-ID"),
    last_event_id: str | None = Query(
        default=None, description="Resume after this event id (the header wins)."
    ),
) -> EventSourceResponse:
    """One task's unit and task events, as `/api/events` but filtered; 404 if unknown."""
    await anyio.to_thread.run_sync(store.get_task, task_id)  # TaskNotFound -> 404
    return _stream(
        broadcaster,
        settings,
        task_id=task_id,
        last_event_id=parse_last_event_id(last_event_id_header, last_event_id),
    )
