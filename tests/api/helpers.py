"""Helpers of the side-app tests: the live server handle, polling, and an SSE parser."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from datatrace_tasks.live.broadcast import EventBroadcaster

DEADLINE = 15.0  # seconds any wait in these tests may take before it fails


@dataclass
class LiveServer:
    """A real uvicorn server running the app on a loopback port, in a thread."""

    app: FastAPI
    server: uvicorn.Server
    thread: threading.Thread
    base_url: str

    @property
    def broadcaster(self) -> EventBroadcaster:
        """The app's event-log poller."""
        broadcaster: EventBroadcaster = self.app.state.datatrace.broadcaster
        return broadcaster

    def client(self, **kwargs: Any) -> httpx.Client:
        """An httpx client for this server."""
        return httpx.Client(base_url=self.base_url, timeout=DEADLINE, **kwargs)


Serve = Callable[..., LiveServer]


def wait_until(condition: Callable[[], object], message: str, timeout: float = DEADLINE) -> None:
    """Poll `condition` until it is true; fail with `message` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(message)
        time.sleep(0.02)


@dataclass
class SseMessage:
    """One parsed server-sent event."""

    event: str = "message"
    id: str | None = None
    data: str = ""
    retry: int | None = None
    fields: list[str] = field(default_factory=list)

    @property
    def json(self) -> Any:
        """The data as JSON."""
        return json.loads(self.data)


def sse_messages(lines: Iterator[str]) -> Iterator[SseMessage]:
    """Parse an SSE line stream into messages (comments skipped), as a browser would."""
    current = SseMessage()
    data: list[str] = []
    for line in lines:
        if line == "":
            if data or current.id is not None or current.fields:
                current.data = "\n".join(data)
                yield current
            current, data = SseMessage(), []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        current.fields.append(name)
        if name == "data":
            data.append(value)
        elif name == "event":
            current.event = value
        elif name == "id":
            current.id = value
        elif name == "retry":
            current.retry = int(value)
