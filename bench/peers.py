"""DataTrace against the best single-purpose tools: whole processes, ratios from one run.

One generated table (bench.copy's 6 columns) copied as a whole process, start to
exit, each run into a fresh empty target whose `COUNT(*)` is then checked:

- MariaDB -> PostgreSQL: `datatrace run job.yaml` (verification on, as by default)
  against pgloader;
- MariaDB -> MariaDB: `datatrace run job.yaml` against mydumper + myloader (2
  threads) and `mariadb-dump | mariadb`.

DataTrace runs twice per pair: with the shared local Prefect server (started once
before timing) and with `DATATRACE_PREFECT_SERVER=ephemeral` (a temporary server
per command), so the start-up cost shows. Methods alternate (A B C ... A B C ...);
medians, DataTrace / peer ratios and the issue 10 goals are appended to
`bench/README.md`. The peers are Debian packages installed here when missing.

    python -m bench.peers [--rows N] [--repeats K] [--ephemeral-repeats K] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench import machine, publish
from bench import peer_runs as peers
from bench.peer_datatrace import PROGRESS_INTERVAL, DataTrace

# key: (pair, label, the package it needs or None)
METHODS: dict[str, tuple[str, str, str | None]] = {
    "pg-datatrace": ("pg", "DataTrace, local Prefect server", None),
    "pg-datatrace-ephemeral": ("pg", "DataTrace, temporary Prefect server", None),
    "pgloader": ("pg", "pgloader", "pgloader"),
    "my-datatrace": ("my", "DataTrace, local Prefect server", None),
    "my-datatrace-ephemeral": ("my", "DataTrace, temporary Prefect server", None),
    "mydumper": ("my", f"mydumper + myloader ({peers.MYDUMPER_THREADS} threads)", "mydumper"),
    "mydumper-chunked": ("my", "the same, table cut in 4 files (`-r`)", "mydumper"),
    "dump": ("my", "`mariadb-dump \\| mariadb`", None),
}
PAIRS = {"pg": "MariaDB -> PostgreSQL", "my": "MariaDB -> MariaDB"}
PEER_OF = {"pg": ("pgloader",), "my": ("mydumper", "mydumper-chunked")}


def loadavg() -> float:
    """The 1-minute load average."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def chunk_rows(source_rows: int) -> int:
    """`mydumper -r`: rows per file for 4 files (2 for each of the 2 threads)."""
    return max(1, -(-source_rows // 4))


def measure(key: str, dtrace: DataTrace, tmp: Path, source_rows: int) -> dict[str, Any]:
    """One run of `key` into a fresh target: its figures, `ok` if it exited 0 with every row."""
    figures: dict[str, Any] = {}
    if "datatrace" in key:
        run, figures = dtrace.run(METHODS[key][0], ephemeral=key.endswith("ephemeral"))
        rows = peers.count_pg("public") if key.startswith("pg") else peers.count_mysql(peers.MY_DST)
    elif key == "pgloader":
        run, rows = peers.run_pgloader(tmp)
    elif key.startswith("mydumper"):
        chunks = chunk_rows(source_rows) if key.endswith("chunked") else None
        run, rows = peers.run_mydumper(tmp, chunks)
    else:
        run, rows = peers.run_dump(tmp)
    ok = run.returncode == 0 and rows == source_rows
    if not ok:
        print(f"  {key} FAILED (exit {run.returncode}, {rows} rows):\n{run.output[-3000:]}")
    base = {"seconds": run.seconds, "rc": run.returncode, "rss_mb": run.rss_mb, "rows": rows}
    return base | figures | {"ok": ok}


def run_all(args: argparse.Namespace, rows: int, keys: list[str]) -> dict[str, Any]:
    """Generate the source, alternate the methods, clean up; everything the report needs."""
    results: dict[str, list[dict[str, Any]]] = {k: [] for k in keys}
    out: dict[str, Any] = {"results": results, "load": [loadavg()], "notes": []}
    with tempfile.TemporaryDirectory(prefix="dt-bench-peers-") as name:
        tmp = Path(name)
        dtrace = DataTrace(tmp)
        try:
            print(f"generating {rows:,} rows ...", flush=True)
            out["source_rows"] = source_rows = peers.generate(rows)
            out["server_start"] = dtrace.start().seconds
            for round_ in range(args.repeats):
                for key in keys:
                    if key.endswith("ephemeral") and round_ >= args.ephemeral_repeats:
                        continue
                    r = measure(key, dtrace, tmp, source_rows)
                    results[key].append(r)
                    print(
                        f"round {round_ + 1} {key:24} {r['seconds']:7.2f} s rc={r['rc']}"
                        f" rows={r['rows']} rss={r['rss_mb']:.0f} MB"
                        f" unit={r.get('unit_seconds', 0):.2f} s"
                        f" copy={r.get('copy_seconds', 0):.2f} s"
                        f" verify={r.get('verify_seconds', 0):.2f} s ok={r['ok']}",
                        flush=True,
                    )
                out["load"].append(loadavg())
        finally:
            out["notes"] += dtrace.stop()
            peers.drop_all()
    return out


def main(argv: list[str] | None = None) -> None:
    """Install the peers, run every method alternately, print and record the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3, help="rounds of A B C ...")
    parser.add_argument(
        "--ephemeral-repeats", type=int, help="rounds that include the temporary-server runs"
    )
    parser.add_argument("--quick", action="store_true", help="100k rows, one round")
    parser.add_argument("--only", default="", help="comma-separated methods (for debugging)")
    parser.add_argument("--no-record", action="store_true", help="do not append to README")
    args = parser.parse_args(argv)
    rows = 100_000 if args.quick and args.rows == 1_000_000 else args.rows
    if args.quick:
        args.repeats = 1
    eph = args.repeats if args.ephemeral_repeats is None else args.ephemeral_repeats
    args.ephemeral_repeats = min(eph, args.repeats)
    missing = peers.install()
    keys = [k for k, (_, _, pkg) in METHODS.items() if pkg not in missing]
    keys = [k for k in keys if k in args.only.split(",")] if args.only else keys
    out = run_all(args, rows, keys)
    out["notes"] += [f"{pkg} could not be installed: not measured" for pkg in missing]
    publish(report(args, rows, out), record=not args.no_record)


# -- the report --------------------------------------------------------------------------


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r["ok"] and r.get(key) is not None]
    return float(statistics.median(values)) if values else None


def _fmt(value: float | None, pattern: str = "{:.2f}") -> str:
    return "-" if value is None else pattern.format(value)


def verify_share(runs: list[dict[str, Any]]) -> tuple[float, float, float, float] | None:
    """Median verification and copy seconds, and the share's bounds (progress lag <= 1 s)."""
    verify, copy = _median(runs, "verify_seconds"), _median(runs, "copy_seconds")
    if verify is None or copy is None or copy <= PROGRESS_INTERVAL:
        return None
    return (
        verify,
        copy,
        100 * verify / copy,
        100 * (verify + PROGRESS_INTERVAL) / (copy - PROGRESS_INTERVAL),
    )


def table_row(key: str, runs: list[dict[str, Any]], rows: int, dt_median: float | None) -> str:
    """One method's line of the table."""
    pair, label, _ = METHODS[key]
    med = _median(runs, "seconds")
    ratio = f"{dt_median / med:.2f}x" if med and dt_median else "-"
    share = verify_share(runs)
    verify = (
        "-"
        if share is None
        else f"{share[0]:.1f} of {share[1]:.1f} ({share[2]:.0f}-{share[3]:.0f} %)"
    )
    each = ", ".join(f"{r['seconds']:.1f}" + ("" if r["ok"] else " FAILED") for r in runs)
    return (
        f"| {PAIRS[pair]} | {label} | {_fmt(med)} | {_fmt(med and rows / med, '{:,.0f}')} |"
        f" {ratio} | {_fmt(_median(runs, 'unit_seconds'))} |"
        f" {_fmt(_median(runs, 'cli_seconds'), '{:.1f}')} |"
        f" {verify} | {max((r['rss_mb'] for r in runs), default=0):.0f} | {each} |"
        f" {sum(r['ok'] for r in runs)} of {len(runs)} |"
    )


def speed_goals(rows: int, results: dict[str, list[dict[str, Any]]]) -> list[str]:
    """DataTrace (local server) <= 1.0x the fastest peer of each pair, with its ratio."""
    lines = []
    for pair, peer_keys in PEER_OF.items():
        dtm = _median(results.get(f"{pair}-datatrace", []), "seconds")
        timed = [(m, k) for k in peer_keys if (m := _median(results.get(k, []), "seconds"))]
        what = f"{PAIRS[pair]}, {rows:,} rows, verification on: DataTrace whole process <= 1.0x"
        if dtm is None or not timed:
            lines.append(f"- goal: {what} {peer_keys[0]}: not measured")
            continue
        peer_m, peer = min(timed)
        eph = _median(results.get(f"{pair}-datatrace-ephemeral", []), "seconds")
        label = METHODS[peer][1].replace("the same", METHODS[peer_keys[0]][1])
        lines.append(
            f"- goal: {what} {label}: {'met' if dtm <= peer_m else 'MISSED'}"
            f" ({dtm / peer_m:.2f}x with the local Prefect server;"
            f" {_fmt(eph and eph / peer_m)}x with a temporary one)"
        )
    return lines


def other_goals(results: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Verification <= 25 % of the copy (each pair, where measurable); peak RSS <= 300 MB."""
    lines = []
    for pair in PAIRS:
        share = verify_share(results.get(f"{pair}-datatrace", []))
        if share is not None:
            _, _, lo, hi = share
            verdict = "met" if hi <= 25 else "MISSED" if lo > 25 else "on the edge"
            lines.append(
                f"- goal: verification <= 25 % of copy time ({PAIRS[pair]}): {verdict}"
                f" ({lo:.0f}-{hi:.0f} %)"
            )
    rss = [r["rss_mb"] for p in PAIRS for r in results.get(f"{p}-datatrace", [])]
    if rss:
        verdict = "met" if max(rss) <= 300 else "MISSED"
        lines.append(
            f"- goal: peak RSS <= 300 MB: {verdict} ({max(rss):.0f} MB, local server runs)"
        )
    return lines


def report(args: argparse.Namespace, rows: int, out: dict[str, Any]) -> list[str]:
    """The table, the goals and what was run, as lines."""
    results, load = out["results"], out["load"]
    cpus = os.cpu_count() or 1
    high = load[0] > cpus / 2 or max(load) > cpus + 1  # the benchmark itself keeps 1-2 busy
    eph = (
        ""
        if args.ephemeral_repeats == args.repeats
        else f" ({args.ephemeral_repeats} for the temporary-server runs)"
    )
    lines = [
        f"### DataTrace against single-purpose tools, whole processes, {rows:,} rows,"
        f" median of {args.repeats}{eph}",
        "",
        f"{machine()}; load average (1 min) before {load[0]:.2f}, highest between rounds"
        f" {max(load):.2f}, after {load[-1]:.2f}"
        + ("; HIGH: other work shared the cores" if high else "")
        + " (the benchmark itself keeps one or two busy)",
        "",
        "| pair | method | median s | rows/s | DataTrace (local server) / this | unit s (store)"
        " | task s (CLI) | verification s of copy s (share) | peak RSS MB | each run s"
        " | row count right |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|---|---|",
    ]
    for key, runs in results.items():
        pair = METHODS[key][0]
        lines.append(
            table_row(key, runs, rows, _median(results.get(f"{pair}-datatrace", []), "seconds"))
        )
    lines += ["", *speed_goals(rows, results), *other_goals(results), *commands(out), *out["notes"]]
    return lines


def commands(out: dict[str, Any]) -> list[str]:
    """How each method was run, and the peers' versions."""
    mydumper, myloader = peers.mydumper_commands(Path("$TMP/mydumper"))
    chunked = peers.mydumper_commands(Path("$TMP/mydumper"), chunk_rows(out.get("source_rows", 0)))
    load = " ".join(peers.pgloader_load().split())
    start = out.get("server_start", 0.0)
    lines = [
        "- DataTrace: `datatrace run job.yaml` (source, target, `tables: [t]`, every other"
        f" setting default); starting the local server before timing took {start:.1f} s",
        f"- pgloader: `pgloader --root-dir $TMP/pgloader bench.load`, the load file `{load}`",
        f"- mydumper: `{' '.join(mydumper)} && {' '.join(myloader)}`; cut in 4 files:"
        f" the same with `{' '.join(chunked[0][-2:])}` (the goal is judged against the faster)",
        f"- dump: `{peers.dump_command()}`",
    ]
    versions = "; ".join(peers.versions().values())
    return lines + [f"- versions: {versions or '-'}"]


if __name__ == "__main__":
    main()
