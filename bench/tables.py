"""Many tables: 50 generated tables of 20,000 rows, DataTrace at concurrency 4 against the
naive pymysql loop run table after table (issue 7, item 2).

DataTrace runs every unit through `make_process_fn` and a real `UnitReporter` over a
SQLite store, four units at a time in a thread pool (what the runner's
`ThreadPoolTaskRunner(max_workers=concurrency)` does, without the Prefect server's
start-up). Methods alternate; medians are appended to `bench/README.md`.

    python -m bench.tables [--tables 50] [--rows 20000] [--repeats 2] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench import MYSQL_URL, machine, mysql_cli, publish, server_engine
from bench.copy import BATCH, DDL, FILL, TABLE

SRC = "dt_bench_many_src"
DST = "dt_bench_many_dst"


def _names(n: int) -> list[str]:
    return [f"t{i:02d}" for i in range(n)]


def run_datatrace(names: list[str], batch: int, concurrency: int, workdir: Path) -> float:
    """All tables through the process function, `concurrency` units at a time."""
    from datatrace_tasks import Store, TaskManager, UnitReporter
    from datatrace_tasks.sync import job_from_dict, make_process_fn

    job = job_from_dict(
        {
            "name": "bench-many",
            "source": f"{MYSQL_URL}/{SRC}",
            "target": f"{MYSQL_URL}/{DST}",
            "tables": names,
            "batch_size": batch,
            "concurrency": concurrency,
        }
    )
    manager = TaskManager(Store(f"sqlite:///{workdir / 'state.db'}"))
    task_id = manager.create_task("bench-many", names)
    units = manager.get_task_units(task_id)
    process = make_process_fn(job)

    def one(unit: Any) -> bool:
        process(unit, UnitReporter(manager, task_id, unit))
        return bool(unit.extra["verification"]["ok"])

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        ok = all(pool.map(one, units))
    manager.flush_progress()
    seconds = time.perf_counter() - started
    if not ok:
        raise RuntimeError("a table failed verification")
    return seconds


def run_naive(names: list[str], batch: int, concurrency: int, workdir: Path) -> float:
    """The naive loop of bench.copy, one table after another."""
    import pymysql
    import pymysql.cursors

    kwargs: dict[str, Any] = {"host": "127.0.0.1", "port": 3306, "user": "root"}
    src = pymysql.connect(**kwargs, database=SRC, charset="utf8mb4")
    dst = pymysql.connect(**kwargs, database=DST, charset="utf8mb4", autocommit=False)
    started = time.perf_counter()
    for name in names:
        with src.cursor(pymysql.cursors.SSCursor) as read, dst.cursor() as write:
            read.execute(f"SELECT * FROM {name}")  # noqa: S608 - fixed benchmark names
            insert = f"INSERT INTO {name} VALUES (%s, %s, %s, %s, %s, %s)"  # noqa: S608
            while rows := read.fetchmany(batch):
                write.executemany(insert, rows)
                dst.commit()
    seconds = time.perf_counter() - started
    src.close()
    dst.close()
    return seconds


METHODS = {"naive": run_naive, "datatrace": run_datatrace}


def generate(tables: int, rows: int) -> None:
    """(Re)create the source schema: `tables` copies of one generated table."""
    names = _names(tables)
    fill = FILL.format(lo=1, hi=rows).replace(f"INSERT INTO {TABLE} ", f"INSERT INTO {names[0]} ")
    sql = [f"DROP SCHEMA IF EXISTS {SRC}", f"CREATE SCHEMA {SRC} CHARACTER SET utf8mb4"]
    sql += [f"USE {SRC}", DDL.replace(f"CREATE TABLE {TABLE} ", f"CREATE TABLE {names[0]} "), fill]
    for name in names[1:]:
        sql.append(f"CREATE TABLE {name} LIKE {names[0]}")
        sql.append(f"INSERT INTO {name} SELECT * FROM {names[0]}")  # noqa: S608
    sql.append(f"ANALYZE TABLE {', '.join(names)}")
    mysql_cli(";\n".join(sql))


def reset_target(method: str, tables: int) -> None:
    """An empty target schema; the naive loop gets the tables made beforehand."""
    sql = [f"DROP SCHEMA IF EXISTS {DST}", f"CREATE SCHEMA {DST} CHARACTER SET utf8mb4"]
    if method == "naive":
        sql += [f"CREATE TABLE {DST}.{n} LIKE {SRC}.{n}" for n in _names(tables)]
    mysql_cli(";\n".join(sql))


def exact(tables: int) -> bool:
    """CHECKSUM TABLE of every table agrees on both sides."""
    engine = server_engine()
    with engine.connect() as conn:
        for name in _names(tables):
            a = conn.exec_driver_sql(f"CHECKSUM TABLE {SRC}.{name}").one()[1]
            b = conn.exec_driver_sql(f"CHECKSUM TABLE {DST}.{name}").one()[1]
            if a != b:
                return False
    engine.dispose()
    return True


def measure(method: str, tables: int, batch: int, concurrency: int) -> dict[str, Any]:
    """Run one method in a fresh child process; returns seconds, RSS and exactness."""
    reset_target(method, tables)
    cmd = [sys.executable, "-m", "bench.tables", "--child", method, "--tables", str(tables)]
    cmd += ["--batch", str(batch), "--concurrency", str(concurrency)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["exact"] = exact(tables)
    return result


def main(argv: list[str] | None = None) -> None:
    """Run the many-tables benchmark and append its table to bench/README.md."""
    parser = argparse.ArgumentParser(prog="python -m bench.tables", description=__doc__)
    parser.add_argument("--tables", type=int, default=50)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    names = _names(args.tables)
    if args.child:
        with tempfile.TemporaryDirectory(prefix="dt-bench-") as tmp:
            seconds = METHODS[args.child](names, args.batch, args.concurrency, Path(tmp))
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"seconds": seconds, "rss_self_mb": rss}))
        return
    print(f"generating {args.tables} tables of {args.rows:,} rows ...", flush=True)
    generate(args.tables, args.rows)
    results: dict[str, list[dict[str, Any]]] = {m: [] for m in METHODS}
    try:
        for round_ in range(args.repeats):
            for method in METHODS:
                r = measure(method, args.tables, args.batch, args.concurrency)
                results[method].append(r)
                print(f"round {round_ + 1} {method:10} {r['seconds']:7.2f} s exact={r['exact']}")
    finally:
        mysql_cli(f"DROP SCHEMA IF EXISTS {SRC}; DROP SCHEMA IF EXISTS {DST}")
    total = args.tables * args.rows
    med = {m: statistics.median(r["seconds"] for r in rs) for m, rs in results.items()}
    lines = [
        f"### Many tables, {args.tables} x {args.rows:,} rows, DataTrace concurrency"
        f" {args.concurrency}, batch {args.batch}, median of {args.repeats}",
        "",
        machine(),
        "",
        "| method | median s | rows/s | DataTrace / this | peak RSS MB | exact |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for method, rs in results.items():
        lines.append(
            f"| {method} | {med[method]:.2f} | {total / med[method]:,.0f} |"
            f" {med[method] / med['datatrace']:.2f}x | {max(r['rss_self_mb'] for r in rs):.0f} |"
            f" {all(r['exact'] for r in rs)} |"
        )
    lines.append(
        f"- target: DataTrace >= 2x the naive loop; measured {med['naive'] / med['datatrace']:.2f}x"
    )
    publish(lines)


if __name__ == "__main__":
    main()
