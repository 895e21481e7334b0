"""Copy throughput: one generated MariaDB table copied to another schema, four ways.

DataTrace (progress, checkpoints and verification on, through the real process
function and a real TaskManager over a SQLite store) against, in the same run:
(a) a naive pymysql loop, (b) `mariadb-dump | mariadb`, (c) server-side
`INSERT ... SELECT`. Methods alternate (A B C D A B C D ...); medians and ratios
are printed and appended to `bench/README.md` (issue 7, items 1, 4 and 5).

Every method runs in its own child process, so its wall time excludes imports
and setup and its peak RSS (own and of its children) is its own.

    python -m bench.copy [--rows N] [--quick] [--full] [--repeats K] [--profile]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import MYSQL_URL, machine, mysql_cli, publish, server_engine

SRC = "dt_bench_src"
DST = "dt_bench_dst"
TABLE = "t"
BATCH = 5000

DDL = (
    f"CREATE TABLE {TABLE} (id INT NOT NULL PRIMARY KEY, name VARCHAR(40) NOT NULL,"
    " created DATETIME NOT NULL, amount DECIMAL(12,2) NOT NULL, qty INT, note TEXT)"
    " CHARACTER SET utf8mb4"
)
# Deterministic (a function of the row number only): ~100 bytes a row, some NULLs,
# and now and then a tab, a backslash and a newline in the text, so the bulk path's
# escaping is exercised at scale too.
FILL = (
    f"INSERT INTO {TABLE} SELECT seq,"  # noqa: S608 (fixed benchmark names)
    " CONCAT('customer-', LPAD(seq * 7919 % 1000003, 7, '0')),"
    " TIMESTAMP('2020-01-01') + INTERVAL (seq * 37 % 100000000) SECOND,"
    " (seq * 104729 % 10000000) / 100,"
    " IF(seq % 89 = 0, NULL, seq * 13 % 1000),"
    " IF(seq % 97 = 0, NULL, CONCAT(SUBSTRING(REPEAT(MD5(seq), 2), 1, 40 + seq % 20),"
    "    IF(seq % 101 = 0, ' tab\\there back\\\\slash\\nnewline', '')))"
    " FROM seq_{lo}_to_{hi}"
)


# -- the methods, each run inside its own child process -----------------------------------


def _job(batch: int) -> Any:
    from datatrace_tasks.sync import job_from_dict

    return job_from_dict(
        {
            "name": "bench",
            "source": f"{MYSQL_URL}/{SRC}",
            "target": f"{MYSQL_URL}/{DST}",
            "tables": [TABLE],
            "batch_size": batch,
            "ranges": int(os.environ["DATATRACE_BENCH_RANGES"])
            if os.environ.get("DATATRACE_BENCH_RANGES")
            else None,
        }
    )


class _NoProgress:
    """A reporter that records nothing: the progress-off side of item 4."""

    checkpoint = None
    processed = 0

    def set_total(self, total: int) -> None:
        pass

    def report(self, processed: int, checkpoint: Any = None) -> None:
        pass

    def set_verification(self, result: Any) -> None:
        pass

    def should_stop(self) -> bool:
        return False


def run_datatrace(batch: int, *, progress: bool = True, workdir: Path) -> dict[str, Any]:
    """DataTrace through make_process_fn and a real UnitReporter over a SQLite store."""
    from datatrace_tasks import Store, TaskManager, UnitReporter
    from datatrace_tasks.sync import make_process_fn

    manager = TaskManager(Store(f"sqlite:///{workdir / 'state.db'}"))
    task_id = manager.create_task("bench", [TABLE])
    (unit,) = manager.get_task_units(task_id)
    process = make_process_fn(_job(batch))
    reporter: Any = UnitReporter(manager, task_id, unit) if progress else _NoProgress()
    started = time.perf_counter()
    process(unit, reporter)
    manager.flush_progress()
    seconds = time.perf_counter() - started
    getattr(process, "close", lambda: None)()
    copy = unit.extra.get("copy", {})
    return {
        "seconds": seconds,
        "copy_seconds": copy.get("copy_seconds"),
        "ranges": copy.get("ranges"),
        "verify_seconds": copy.get("verify_seconds"),
        "path": copy.get("path"),
        "verified": unit.extra.get("verification", {}).get("ok"),
    }


def run_auto_mode(batch: int, *, workdir: Path) -> dict[str, Any]:
    """The same copy through `execute_auto_mode` (a Prefect flow; its startup included)."""
    os.environ.setdefault("PREFECT_HOME", str(workdir / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    from datatrace_tasks import Store, TaskManager
    from datatrace_tasks.sync import make_process_fn

    manager = TaskManager(Store(f"sqlite:///{workdir / 'state.db'}"))
    task_id = manager.create_task("bench", [TABLE])
    process = make_process_fn(_job(batch))
    started = time.perf_counter()
    done = manager.execute_auto_mode(task_id, concurrency=1, process_fn=process)
    seconds = time.perf_counter() - started
    getattr(process, "close", lambda: None)()
    return {"seconds": seconds, "completed_units": done}


def run_naive(batch: int, **_: Any) -> dict[str, Any]:
    """(a) SSCursor streaming + executemany of `batch` rows + commit per batch."""
    import pymysql
    import pymysql.cursors

    kwargs: dict[str, Any] = {"host": "127.0.0.1", "port": 3306, "user": "root"}
    src = pymysql.connect(**kwargs, database=SRC, charset="utf8mb4")
    dst = pymysql.connect(**kwargs, database=DST, charset="utf8mb4", autocommit=False)
    started = time.perf_counter()
    with src.cursor(pymysql.cursors.SSCursor) as read, dst.cursor() as write:
        read.execute(f"SELECT * FROM {TABLE}")  # noqa: S608
        insert = f"INSERT INTO {TABLE} VALUES (%s, %s, %s, %s, %s, %s)"  # noqa: S608
        while rows := read.fetchmany(batch):
            write.executemany(insert, rows)
            dst.commit()
    seconds = time.perf_counter() - started
    src.close()
    dst.close()
    return {"seconds": seconds}


def run_dump(batch: int, **_: Any) -> dict[str, Any]:
    """(b) `mariadb-dump --single-transaction src t | mariadb dst`."""
    base = "-h 127.0.0.1 -P 3306 -u root"
    started = time.perf_counter()
    subprocess.run(
        f"mariadb-dump {base} --single-transaction {SRC} {TABLE} | mariadb {base} {DST}",
        shell=True,  # noqa: S602 - fixed names, a pipeline is the point
        check=True,
    )
    return {"seconds": time.perf_counter() - started}


def run_insert_select(batch: int, **_: Any) -> dict[str, Any]:
    """(c) `INSERT INTO dst.t SELECT * FROM src.t`: the ceiling for one server."""
    started = time.perf_counter()
    mysql_cli(f"INSERT INTO {DST}.{TABLE} SELECT * FROM {SRC}.{TABLE}")  # noqa: S608
    return {"seconds": time.perf_counter() - started}


METHODS: dict[str, Callable[..., dict[str, Any]]] = {
    "datatrace": run_datatrace,
    "datatrace-noprogress": lambda batch, **kw: run_datatrace(batch, progress=False, **kw),
    "naive": run_naive,
    "dump": run_dump,
    "insert-select": run_insert_select,
    "auto-mode": run_auto_mode,
}
CREATES_TABLE = {"datatrace", "datatrace-noprogress", "dump", "auto-mode"}


def child(method: str, batch: int) -> None:
    """Run one method and print its figures (JSON) as the last line."""
    with tempfile.TemporaryDirectory(prefix="dt-bench-") as tmp:
        result = METHODS[method](batch, workdir=Path(tmp))
    result["rss_self_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["rss_children_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps(result))


# -- the driver ---------------------------------------------------------------------------


def generate(rows: int) -> None:
    """(Re)create the source table with `rows` deterministic rows."""
    mysql_cli(f"DROP SCHEMA IF EXISTS {SRC}; CREATE SCHEMA {SRC} CHARACTER SET utf8mb4")
    step = 1_000_000
    statements = [f"USE {SRC}", DDL]
    for lo in range(1, rows + 1, step):
        statements.append(FILL.format(lo=lo, hi=min(lo + step - 1, rows)))
    mysql_cli(";\n".join(statements) + f";\nANALYZE TABLE {SRC}.{TABLE}")


def reset_target(method: str) -> None:
    """An empty target schema; the table made beforehand for methods that need one."""
    sql = f"DROP SCHEMA IF EXISTS {DST}; CREATE SCHEMA {DST} CHARACTER SET utf8mb4"
    if method not in CREATES_TABLE:
        sql += f"; CREATE TABLE {DST}.{TABLE} LIKE {SRC}.{TABLE}"
    mysql_cli(sql)


def checksum_equal() -> bool:
    """CHECKSUM TABLE on both sides: the copy is exact."""
    engine = server_engine()
    with engine.connect() as conn:
        a = conn.exec_driver_sql(f"CHECKSUM TABLE {SRC}.{TABLE}").one()[1]
        b = conn.exec_driver_sql(f"CHECKSUM TABLE {DST}.{TABLE}").one()[1]
    engine.dispose()
    return bool(a == b)


def measure(method: str, batch: int, *, profile: Path | None = None) -> dict[str, Any]:
    """Run `method` in a fresh child process against an empty target; returns its figures."""
    reset_target(method)
    cmd = [sys.executable, "-m", "bench.copy", "--child", method, "--batch", str(batch)]
    if profile is not None:
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        cmd = [spy, "record", "--subprocesses", "-r", "200", "-f", "raw", "-o", str(profile)]
        cmd += ["--", sys.executable, "-m", "bench.copy", "--child", method]
        cmd += ["--batch", str(batch)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    last = [line for line in out.stdout.splitlines() if line.startswith("{")][-1]
    result: dict[str, Any] = json.loads(last)
    result["exact"] = checksum_equal()
    return result


def top_frames(raw: Path, n: int = 15) -> list[tuple[str, float, float]]:
    """From py-spy's collapsed stacks: (function, % self, % inclusive), by self time."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        samples = int(count)
        frames = stack.split(";")
        total += samples
        own[frames[-1]] = own.get(frames[-1], 0) + samples
        for frame in set(frames):
            incl[frame] = incl.get(frame, 0) + samples
    ranked = sorted(own, key=lambda f: -own[f])[:n]
    return [(f, 100 * own[f] / total, 100 * incl[f] / total) for f in ranked]


def profile_lines(batch: int) -> list[str]:
    """One DataTrace run under py-spy: its top frames as table lines."""
    raw = Path(tempfile.gettempdir()) / "dt-bench-profile.txt"
    r = measure("datatrace", batch, profile=raw)
    lines = [f"- py-spy profile of one DataTrace run ({r['seconds']:.1f} s):", ""]
    lines += ["| function | % self | % incl. |", "|---|---:|---:|"]
    for frame, self_pct, incl_pct in top_frames(raw):
        lines.append(f"| `{frame}` | {self_pct:.1f} | {incl_pct:.1f} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    """Run the copy benchmark and append its table to bench/README.md."""
    parser = argparse.ArgumentParser(prog="python -m bench.copy", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="200k rows, one round")
    parser.add_argument("--full", action="store_true", help="also peak RSS at 5M rows")
    parser.add_argument("--repeats", type=int, default=2, help="rounds of A B C D")
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--profile", action="store_true", help="py-spy the DataTrace run")
    parser.add_argument("--no-auto", action="store_true", help="skip the execute_auto_mode run")
    parser.add_argument("--only", default="", help="comma-separated methods (for debugging)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.batch)
        return
    rows = 200_000 if args.quick and args.rows == 1_000_000 else args.rows
    repeats = 1 if args.quick else args.repeats
    order = ["naive", "datatrace", "dump", "insert-select", "datatrace-noprogress"]
    if args.only:
        order = [m for m in args.only.split(",") if m]
    print(f"generating {rows:,} rows ...", flush=True)
    generate(rows)
    results: dict[str, list[dict[str, Any]]] = {m: [] for m in order}
    try:
        for round_ in range(repeats):
            for method in order:
                r = measure(method, args.batch)
                results[method].append(r)
                print(
                    f"round {round_ + 1} {method:22} {r['seconds']:7.2f} s"
                    f" {rows / r['seconds']:9,.0f} rows/s exact={r['exact']}"
                    f" rss={r['rss_self_mb']:.0f}/{r['rss_children_mb']:.0f} MB",
                    flush=True,
                )
        extra: list[str] = []
        if not args.quick and not args.no_auto and not args.only:
            r = measure("auto-mode", args.batch)
            extra.append(
                f"- through `execute_auto_mode` (one Prefect flow, ephemeral server start"
                f" included): {r['seconds']:.1f} s, {rows / r['seconds']:,.0f} rows/s"
            )
        if args.profile:
            extra += profile_lines(args.batch)
        rss_lines: list[str] = []
        if args.full:
            for n in (1_000_000, 5_000_000):
                generate(n)
                r = measure("datatrace", args.batch)
                rss_lines.append(
                    f"- {n:,} rows: {r['seconds']:.1f} s ({n / r['seconds']:,.0f} rows/s),"
                    f" peak RSS unit process {r['rss_self_mb']:.0f} MB,"
                    f" largest worker {r['rss_children_mb']:.0f} MB, exact={r['exact']}"
                )
        report(rows, args.batch, repeats, results, extra + rss_lines)
    finally:
        mysql_cli(f"DROP SCHEMA IF EXISTS {SRC}; DROP SCHEMA IF EXISTS {DST}")


def _median(results: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in results))


def report(
    rows: int,
    batch: int,
    repeats: int,
    results: dict[str, list[dict[str, Any]]],
    extra: list[str],
) -> None:
    """Print the table and append it to bench/README.md."""
    speed = {m: rows / _median(rs, "seconds") for m, rs in results.items() if rs}
    lines = [
        f"### Copy throughput, {rows:,} rows, batch {batch}, median of {repeats}",
        "",
        machine(),
        "",
        "| method | median s | rows/s | DataTrace / this | peak RSS MB (self / children) | exact |",
        "|---|---:|---:|---:|---:|---|",
    ]
    dt_speed = speed.get("datatrace")
    for method, rs in results.items():
        if not rs:
            continue
        ratio = f"{dt_speed / speed[method]:.2f}x" if dt_speed else "-"
        rss = (
            f"{max(r['rss_self_mb'] for r in rs):.0f} / {max(r['rss_children_mb'] for r in rs):.0f}"
        )
        exact = all(r["exact"] for r in rs)
        lines.append(
            f"| {method} | {_median(rs, 'seconds'):.2f} | {speed[method]:,.0f} | {ratio} |"
            f" {rss} | {exact} |"
        )
    if "datatrace" in results and results["datatrace"]:
        verify = [r.get("verify_seconds") for r in results["datatrace"]]
        if all(v is not None for v in verify):
            lines.append("")
            lines.append(
                f"- DataTrace path: {results['datatrace'][0].get('path')}; verification"
                f" took {statistics.median(verify):.2f} s of the DataTrace time"
            )
    if "datatrace-noprogress" in speed and dt_speed:
        cost = speed["datatrace-noprogress"] / dt_speed - 1
        lines.append(f"- progress on vs off: {100 * cost:+.1f} % time (target <= 3 %)")
    lines += extra
    publish(lines)


if __name__ == "__main__":
    main()
