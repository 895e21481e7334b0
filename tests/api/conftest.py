"""Fixtures for the side-app: the real app under a real uvicorn server on a free port."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from api.main import create_app
from datatrace_tasks.orchestration.manager import TaskManager
from datatrace_tasks.state.store import Store
from tests.api.helpers import DEADLINE, LiveServer, Serve, wait_until


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def serve() -> Iterator[Serve]:
    """`serve(store_url, **create_app_options)` starts the app; every server stops after."""
    started: list[LiveServer] = []

    def start(store_url: str, **options: Any) -> LiveServer:
        app = create_app(store_url, **options)
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=_free_port(),
            log_level="warning",
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
        thread.start()
        wait_until(lambda: server.started, "the server did not start")
        live = LiveServer(app, server, thread, f"http://127.0.0.1:{config.port}")
        started.append(live)
        return live

    yield start
    for live in started:
        live.server.should_exit = True
    for live in started:
        live.thread.join(DEADLINE)


@pytest.fixture
def fast_manager(store: Store) -> TaskManager:
    """A TaskManager that writes every progress change (no throttle), so each is an event."""
    return TaskManager(store, progress_interval=0)
