"""Orchestration overhead: 1,000 no-op units through DataTrace, bare Prefect and a thread pool.

All three run in this process against the local Prefect server every `datatrace`
command shares by default (started here in a temporary data folder, stopped at the
end; Prefect's temporary in-process server answers 503 under this load), each run
starting on an idle server (the server records task runs from events after a run
ends: the wait for it to go idle is not timed), after one
warm-up run of each (the SQLite state store migrated before anything is timed), and
alternate A B C A B C; medians are reported as ms per unit and as ratios.

- thread pool: `ThreadPoolExecutor(8).map(noop, units)`, the floor;
- bare Prefect: `noop.map(units)` in a flow on `ThreadPoolTaskRunner(8)`;
- DataTrace: `TaskManager.execute_auto_mode(task, 8, noop)` over a SQLite store,
  the units' states mirrored into `task_unit_runtimes` by the hooks.

Issue 7 item 3; target DataTrace <= 1.2x bare Prefect.

    python -m bench.overhead [--units 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

WORKERS = 8


def _prefect_env(home: Path) -> None:
    """Point this process at a local Prefect server of its own, as `datatrace run` does."""
    from datatrace_tasks.cli import prefect_server

    os.environ.pop("PREFECT_API_URL", None)
    os.environ.pop(prefect_server.MODE_ENV, None)
    os.environ["DATATRACE_DATA_DIR"] = str(home)
    os.environ["PREFECT_HOME"] = str(home / "client")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")
    prefect_server.use_for_this_process()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def quiesce(pid: int, *, idle: float = 0.05, longest: float = 120.0) -> None:
    """Wait (untimed) until the Prefect server has worked off what the last run sent it.

    The server records task runs from events after the run ends; without this the next
    method would pay for the previous one's backlog. Idle: under `idle` of a core for
    half a second.
    """
    deadline = time.monotonic() + longest
    while time.monotonic() < deadline:
        before = _cpu_seconds(pid)
        time.sleep(0.5)
        if _cpu_seconds(pid) - before < idle * 0.5:
            return


def methods(workdir: Path, units: int) -> dict[str, Callable[[], None]]:
    """The three ways to run `units` no-op units; each call is one timed run."""
    from prefect import flow, task
    from prefect.task_runners import ThreadPoolTaskRunner

    from datatrace_tasks.orchestration.manager import TaskManager
    from datatrace_tasks.state.store import Store

    def nothing(_: Any) -> None:
        return None

    def thread_pool() -> None:
        with ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(nothing, range(units)))

    @task(name="noop")
    def noop(i: int) -> None:
        return None

    @flow(name="bare-prefect", task_runner=ThreadPoolTaskRunner(max_workers=WORKERS))
    def bare() -> None:
        noop.map(list(range(units))).wait()

    manager = TaskManager(Store(f"sqlite:///{workdir}/state.db"))
    runs = [0]

    def datatrace() -> None:
        runs[0] += 1
        task_id = manager.create_task(f"noop-{runs[0]}", [f"u{i}" for i in range(units)])
        manager.execute_auto_mode(task_id, WORKERS, lambda unit, reporter: None)

    return {"thread pool": thread_pool, "bare Prefect": bare, "DataTrace": datatrace}


def main(argv: list[str] | None = None) -> None:
    """Warm up, alternate the methods, print and record the medians."""
    parser = argparse.ArgumentParser(prog="python -m bench.overhead", description=__doc__)
    parser.add_argument("--units", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-record", action="store_true", help="do not append to README")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dt-bench-overhead-") as tmp:
        from bench import publish
        from datatrace_tasks.cli import prefect_server

        _prefect_env(Path(tmp))
        server = prefect_server.running()
        assert server is not None, "the local Prefect server did not start"
        try:
            runs = methods(Path(tmp), args.units)
            for run in runs.values():
                run()  # warm-up: migrations, imports, the server's caches
                quiesce(server.pid)
            seconds: dict[str, list[float]] = {name: [] for name in runs}
            for _ in range(args.repeats):
                for name, run in runs.items():
                    started = time.perf_counter()
                    run()
                    seconds[name].append(time.perf_counter() - started)
                    quiesce(server.pid)
        finally:
            prefect_server.stop()
    ms = {name: statistics.median(s) * 1000 / args.units for name, s in seconds.items()}
    bare = ms["bare Prefect"]
    lines = [
        f"### Orchestration overhead, {args.units:,} no-op units, {WORKERS} workers,"
        f" median of {args.repeats}",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; nproc {os.cpu_count()};"
        f" Python {sys.version.split()[0]}; local Prefect server, SQLite state store",
        "",
        "| method | ms per unit | / bare Prefect |",
        "|---|---:|---:|",
        *(f"| {name} | {value:.2f} | {value / bare:.2f}x |" for name, value in ms.items()),
        f"- target DataTrace <= 1.2x bare Prefect:"
        f" {'met' if ms['DataTrace'] <= 1.2 * bare else 'MISSED'}"
        f" ({ms['DataTrace'] / bare:.2f}x)",
    ]
    publish(lines, record=not args.no_record)


if __name__ == "__main__":
    main()
