"""SSE fan-out: many browsers on one uvicorn worker while a job writes 20 events a second.

The side-app runs as `datatrace serve` (one uvicorn worker, its own process) over a
SQLite state store. This process opens N raw HTTP/1.1 connections to
`/api/tasks/{id}/events` (a few bytes of parsing each, so the clients cost far less
than the server), then a thread writes progress events through the real `Store` at
a fixed rate and notes the moment each event's transaction committed. Latency is
receipt minus commit, per client and event. The baseline, measured in the same run,
is one client: the floor set by the app's poll interval. Issue 4 / issue 7 item 6.

    python -m bench.sse [--clients 1000] [--rate 20] [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import publish
from datatrace_tasks.state.store import Store


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raise_file_limit() -> None:
    """Allow this process and the server it starts a descriptor per client."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def peak_rss_mb(pid: int) -> float:
    """Peak resident set (VmHWM) of a live process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Client:
    """One SSE connection that records when each event id arrived."""

    def __init__(self) -> None:
        self.received: dict[int, float] = {}
        self.connected = asyncio.Event()

    async def run(self, port: int, path: str, stop: asyncio.Event) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        await writer.drain()
        try:
            while not stop.is_set():
                line = await reader.readline()
                if not line:
                    break
                if line.startswith(b"event: heartbeat"):
                    self.connected.set()
                elif line.startswith(b"id: "):
                    self.received[int(line[4:])] = time.time()
                    self.connected.set()
        finally:
            writer.close()


def emit(store: Store, task_id: str, rate: float, seconds: float, out: dict[int, float]) -> None:
    """Write `rate` progress events a second for `seconds`; note each commit time by id."""
    interval = 1 / rate
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < seconds:
        n += 1
        event_id = store.write_unit(task_id, f"u{n % 4}", processed=n, event="progress")
        assert event_id is not None
        out[event_id] = time.time()
        time.sleep(max(0.0, start + n * interval - time.monotonic()))


async def measure(
    port: int, task_id: str, store: Store, clients: int, rate: float, seconds: float
) -> tuple[list[float], int, int]:
    """Connect `clients`, emit, drain; returns (latencies in s, events, clients complete)."""
    stop = asyncio.Event()
    conns = [Client() for _ in range(clients)]
    path = f"/api/tasks/{task_id}/events"
    tasks = []
    for i, c in enumerate(conns):
        tasks.append(asyncio.create_task(c.run(port, path, stop)))
        if i % 100 == 99:
            await asyncio.sleep(0.05)  # a browser crowd arrives over a moment, not one tick
    await asyncio.wait_for(asyncio.gather(*(c.connected.wait() for c in conns)), 120)
    committed: dict[int, float] = {}
    await asyncio.to_thread(emit, store, task_id, rate, seconds, committed)
    last = max(committed)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(last in c.received for c in conns):
        await asyncio.sleep(0.1)
    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    latencies = [
        c.received[i] - at for c in conns for i, at in committed.items() if i in c.received
    ]
    complete = sum(all(i in c.received for i in committed) for c in conns)
    return latencies, len(committed), complete


def run_once(clients: int, rate: float, seconds: float) -> dict[str, Any]:
    """Start a fresh server and store, measure, stop; the figures of one run."""
    with tempfile.TemporaryDirectory(prefix="dt-bench-sse-") as tmp:
        url = f"sqlite:///{tmp}/state.db"
        store = Store(url)
        task_id = store.create_task(name="sse-bench", units=[(f"u{i}", f"u{i}") for i in range(4)])
        port = free_port()
        env = {**os.environ, "DATATRACE_DATABASE_URL": url}
        server = subprocess.Popen(
            [sys.executable, "-m", "datatrace_tasks", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            latencies, events, complete = asyncio.run(
                measure(port, task_id, store, clients, rate, seconds)
            )
            rss = peak_rss_mb(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)
            store.dispose()
    latencies.sort()
    q = statistics.quantiles(latencies, n=100)
    return {
        "clients": clients,
        "events": events,
        "complete": complete,
        "p50": statistics.median(latencies),
        "p99": q[98],
        "max": latencies[-1],
        "rss": rss,
    }


def main(argv: list[str] | None = None) -> None:
    """Measure one client (baseline) and N clients in the same run; print and record."""
    parser = argparse.ArgumentParser(prog="python -m bench.sse", description=__doc__)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--no-record", action="store_true", help="do not append to README")
    args = parser.parse_args(argv)
    raise_file_limit()
    runs = [run_once(n, args.rate, args.seconds) for n in (1, args.clients)]
    base = runs[0]
    lines = [
        f"### SSE fan-out, {args.clients} clients, {args.rate:g} events/s for"
        f" {args.seconds:g} s, one uvicorn worker",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; nproc {os.cpu_count()};"
        " SQLite state store; latency = receipt minus the event's commit",
        "",
        "| clients | events | clients with every event | p50 ms | p99 ms | max ms"
        " | p99 / 1-client p99 | server peak RSS MB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        lines.append(
            f"| {r['clients']} | {r['events']} | {r['complete']} | {r['p50'] * 1000:.0f}"
            f" | {r['p99'] * 1000:.0f} | {r['max'] * 1000:.0f}"
            f" | {r['p99'] / base['p99']:.2f}x | {r['rss']:.0f} |"
        )
    big = runs[-1]
    lines.append(
        f"- target p99 < 1000 ms: {'met' if big['p99'] < 1 else 'MISSED'}"
        f" ({big['p99'] * 1000:.0f} ms); target RSS < 300 MB:"
        f" {'met' if big['rss'] < 300 else 'MISSED'} ({big['rss']:.0f} MB)"
    )
    publish(lines, record=not args.no_record)


if __name__ == "__main__":
    main()
