"""Start-up: whole `datatrace` processes, the local Prefect server against Prefect's temporary one.

A 20,000-row MariaDB table copied by `datatrace run` (the process from start to exit),
with the shared local Prefect server (already started once: the second run on the
machine) and with `DATATRACE_PREFECT_SERVER=ephemeral` (a temporary server per
command, as before); and the commands that run no unit (`--help`, `plan`, `status`).
Runs alternate; medians are reported, with the ratio of the local server's run to
the temporary one's.

Issue 12 goals: the 20,000-row job <= 3 s whole process; `status` <= 0.5 s.

    python -m bench.startup [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench import MYSQL_URL, machine, mysql_cli, publish

ROWS = 20_000


def _source() -> None:
    mysql_cli(  # fixed names and a number: nothing to inject
        "DROP DATABASE IF EXISTS dt_bench_startup_src; CREATE DATABASE dt_bench_startup_src;"  # noqa: S608
        "DROP DATABASE IF EXISTS dt_bench_startup_dst; CREATE DATABASE dt_bench_startup_dst;"
        "CREATE TABLE dt_bench_startup_src.t (id INT PRIMARY KEY, a VARCHAR(40),"
        " b DECIMAL(10,2), c DATETIME);"
        "USE dt_bench_startup_src;"  # the sequence engine's seq_ tables need a database
        "INSERT INTO t SELECT seq, CONCAT('row ', seq), seq / 7, NOW()"
        f" FROM seq_1_to_{ROWS};"
    )


def _timed(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "datatrace_tasks", *args],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    """Time each command alternately; print and record the medians."""
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-record", action="store_true", help="do not append to README")
    args = parser.parse_args(argv)
    _source()
    with tempfile.TemporaryDirectory(prefix="dt-bench-startup-") as tmp:
        job = Path(tmp) / "job.yaml"
        job.write_text(
            yaml.safe_dump(
                {
                    "name": "startup-20k",
                    "source": f"{MYSQL_URL}/dt_bench_startup_src",
                    "target": f"{MYSQL_URL}/dt_bench_startup_dst",
                    "write_mode": "truncate",
                }
            )
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(DATATRACE_DATA_DIR=tmp, DATATRACE_DATABASE_URL=f"sqlite:///{tmp}/state.db")
        env.pop("DATATRACE_PREFECT_SERVER", None)
        first = _timed(["run", str(job)], env)  # starts the local server: the first run
        task_id = _last_task(Path(tmp) / "state.db")
        commands = {
            "run, local Prefect server": (["run", str(job)], env),
            "run, temporary Prefect server": (
                ["run", str(job)],
                {**env, "DATATRACE_PREFECT_SERVER": "ephemeral"},
            ),
            "--help": (["--help"], env),
            "plan": (["plan", str(job)], env),
            "status": (["status", task_id], env),
        }
        seconds: dict[str, list[float]] = {name: [] for name in commands}
        try:
            for _ in range(args.repeats):
                for name, (command, command_env) in commands.items():
                    seconds[name].append(_timed(command, command_env))
        finally:
            _timed(["prefect", "stop"], env)
            mysql_cli(
                "DROP DATABASE IF EXISTS dt_bench_startup_src;"
                " DROP DATABASE IF EXISTS dt_bench_startup_dst;"
            )
    _report(first, {name: statistics.median(s) for name, s in seconds.items()}, args)


def _last_task(state: Path) -> str:
    import sqlite3

    with sqlite3.connect(state) as conn:
        row = conn.execute("SELECT id FROM sync_tasks ORDER BY created_at DESC").fetchone()
    return str(row[0])


def _report(first: float, median: dict[str, float], args: argparse.Namespace) -> None:
    local = median["run, local Prefect server"]
    temporary = median["run, temporary Prefect server"]
    lines = [
        f"### Start-up, whole processes, {ROWS:,}-row MariaDB table, median of {args.repeats}",
        "",
        machine(),
        "",
        "| command | seconds | / temporary-server run |",
        "|---|---:|---:|",
        f"| first run on the machine (starts the local server) | {first:.2f} | |",
        *(f"| {name} | {value:.2f} | {value / temporary:.2f}x |" for name, value in median.items()),
        f"- goal: 20,000-row job <= 3 s whole process: {'met' if local <= 3 else 'MISSED'}"
        f" ({local:.2f} s; {temporary / local:.1f}x faster than with the temporary server)",
        f"- goal: status <= 0.5 s: {'met' if median['status'] <= 0.5 else 'MISSED'}"
        f" ({median['status']:.2f} s)",
    ]
    publish(lines, record=not args.no_record)


if __name__ == "__main__":
    main()
