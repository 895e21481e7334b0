"""The long-lived local Prefect server every `datatrace` command shares by default.

Without `PREFECT_API_URL`, Prefect starts a temporary server in every process (10 to
25 s each time, and it drops task-run records under load). Instead, the first
command that runs units starts `prefect server start` in the background, with its
own `PREFECT_HOME` in DataTrace's data folder, and every later command reuses it: its
UI shows each sync task's flow run with one task run per unit.

`DATATRACE_PREFECT_SERVER=ephemeral` keeps Prefect's temporary server instead; a
`PREFECT_API_URL` of your own always wins. Nothing is left half-started: a server
that does not become healthy is stopped, and the error says why and how to fall back.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from datatrace_tasks.exceptions import ConfigError
from datatrace_tasks.settings import DataTraceSettings
from datatrace_tasks.state.leases import process_alive

DEFAULT_PORT = 4200
START_TIMEOUT_SECONDS = 90.0
MODE_ENV = "DATATRACE_PREFECT_SERVER"


@dataclass(frozen=True)
class LocalServer:
    """A running local Prefect server: its process and its addresses."""

    pid: int
    port: int

    @property
    def api_url(self) -> str:
        """What `PREFECT_API_URL` must say to talk to it."""
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def ui_url(self) -> str:
        """Where its UI is."""
        return f"http://127.0.0.1:{self.port}/"


def folder() -> Path:
    """The server's `PREFECT_HOME` (its database, its log, its state file)."""
    path = DataTraceSettings().data_dir / "prefect"
    path.mkdir(parents=True, exist_ok=True)
    return path


def running() -> LocalServer | None:
    """The local server if one is up and healthy, else None (a stale record is removed)."""
    record = folder() / "server.json"
    try:
        server = LocalServer(**json.loads(record.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if process_alive(server.pid) and _healthy(server.api_url):
        return server
    if not process_alive(server.pid):
        record.unlink(missing_ok=True)
    return None


def ensure(on_start: Callable[[], None] | None = None) -> LocalServer:
    """The running local server, started first if there is none (`on_start` is told).

    Raises:
        ConfigError: it did not come up (the message says why and how to fall back).
    """
    with _lock():
        server = running()
        if server is not None:
            return server
        if on_start is not None:
            on_start()
        return _start()


def stop() -> LocalServer | None:
    """Stop the local server; returns the one stopped, or None if none was running."""
    with _lock():
        server = running()
        if server is None:
            return None
        _terminate(server.pid)
        (folder() / "server.json").unlink(missing_ok=True)
        return server


def use_for_this_process(on_start: Callable[[], None] | None = None) -> LocalServer | None:
    """Point this process's Prefect client at the local server, unless told otherwise.

    Returns the server used, or None when `PREFECT_API_URL` is already set or
    `DATATRACE_PREFECT_SERVER=ephemeral` asks for Prefect's temporary server.
    """
    if os.environ.get("PREFECT_API_URL") or os.environ.get(MODE_ENV) == "ephemeral":
        return None
    server = ensure(on_start)
    os.environ["PREFECT_API_URL"] = server.api_url
    return server


def _start() -> LocalServer:
    home = folder()
    port = _free_port(DEFAULT_PORT)
    log_path = home / "server.log"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start"]
            + ["--host", "127.0.0.1", "--port", str(port), "--analytics-off"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # it outlives this command, and Ctrl-C here
        )
    server = LocalServer(pid=process.pid, port=port)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        if _healthy(server.api_url):
            (home / "server.json").write_text(json.dumps(asdict(server)))
            return server
        time.sleep(0.5)
    code = process.poll()
    _terminate(process.pid)
    what = (
        f"exited with code {code}"
        if code is not None
        else f"was not healthy within {START_TIMEOUT_SECONDS:.0f} s and was stopped"
    )
    raise ConfigError(
        f"the local Prefect server {what} (its log: {log_path}); point PREFECT_API_URL "
        f"at a Prefect server, or set {MODE_ENV}=ephemeral to use a temporary one per command"
    )


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    """One process at a time starts or stops the server."""
    with (folder() / "server.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _healthy(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:  # noqa: S310
            return bool(response.status == 200)
    except OSError:
        return False


def _terminate(pid: int) -> None:
    """SIGTERM the server's process group, then SIGKILL what is left after 10 s."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 2.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            if not process_alive(pid):
                return
            time.sleep(0.1)


def _free_port(preferred: int) -> int:
    """`preferred` if nothing listens there, else any free port."""
    for port in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise ConfigError("no free port on 127.0.0.1 for the local Prefect server")
