"""Serving the live-progress side-app with uvicorn, in the foreground or beside a job.

The app is named by its import string (`api.main:create_app`), never imported here:
the library does not depend on the side-app, and the app reads its store and token
from the environment like any other uvicorn deployment.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import uvicorn

APP = "api.main:create_app"


def bind(host: str, port: int, *, fallback: bool = False) -> socket.socket:
    """A listening socket on host:port; with `fallback`, any free port if that one is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        if not fallback:
            sock.close()
            raise
        sock.bind((host, 0))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def address(sock: socket.socket) -> str:
    """The URL a browser opens for a bound socket."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def _config(log_level: str) -> uvicorn.Config:
    return uvicorn.Config(APP, factory=True, log_level=log_level, timeout_graceful_shutdown=3)


def serve_forever(sock: socket.socket, *, log_level: str = "info") -> None:
    """Serve the side-app on `sock` until interrupted (Ctrl-C or SIGTERM)."""
    uvicorn.Server(_config(log_level)).run(sockets=[sock])


@contextlib.contextmanager
def dashboard_in_background(sock: socket.socket) -> Iterator[uvicorn.Server]:
    """Serve the side-app from a thread while the caller runs a job; stop it on exit."""
    server = uvicorn.Server(_config("warning"))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="datatrace-dashboard", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield server
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
