"""Repeat syncs: a differential re-sync against the full copy of the same table.

One generated table (bench.copy's 6 columns, 1,000,000 rows by default) is copied in
full by `datatrace run` with `mode: differential` into an empty target (the first run
of such a job is a full copy); then 1 % of the source rows are updated, 0.1 %
inserted and 0.1 % deleted, and the same job runs again: it compares both sides
bucket by bucket and writes only what differs. Both are whole processes against the
shared local Prefect server (started before timing). Each run must exit 0 (every
unit completed and verified) and leave the target's `COUNT(*)` equal to the source's.
Rounds alternate the pairs; medians are reported, with the ratio re-sync / full copy.

Issue 13 goal: differential re-sync <= 0.25x the full copy, target exact.

    python -m bench.resync [--rows N] [--repeats K] [--pairs pg,my] [--no-record]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any

import yaml

from bench import MYSQL_URL, machine, mysql_cli, publish
from bench.copy import TABLE
from bench.peer_datatrace import DataTrace, executable
from bench.peer_runs import (
    MY_DST,
    SRC,
    count_mysql,
    count_pg,
    drop_all,
    generate,
    pg_url,
    reset_mysql,
    reset_pg,
    timed,
)

PAIRS = {"pg": "MariaDB -> PostgreSQL", "my": "MariaDB -> MariaDB"}


def change_source(rows: int) -> dict[str, int]:
    """1 % updated, 0.1 % inserted, 0.1 % deleted (spread over the whole key range)."""
    step_upd, step_del, added = 100, 1000, rows // 1000
    mysql_cli(
        f"USE {SRC};"  # noqa: S608 - fixed benchmark names and numbers: nothing to inject
        f"UPDATE {TABLE} SET amount = amount + 1, note = CONCAT('changed ', id)"
        f" WHERE MOD(id, {step_upd}) = 7;"
        f"DELETE FROM {TABLE} WHERE MOD(id, {step_del}) = 3;"
        f"INSERT INTO {TABLE} SELECT seq, 'new', NOW(), seq / 100, seq, NULL"
        f" FROM seq_{rows + 1}_to_{rows + added};"
    )
    return {"updated": rows // step_upd, "deleted": rows // step_del, "inserted": added}


def _job(tmp: Path, pair: str) -> Path:
    target = pg_url().render_as_string(hide_password=False) if pair == "pg" else None
    path = tmp / f"resync-{pair}.yaml"
    job = {
        "name": f"bench-resync-{pair}",
        "source": f"{MYSQL_URL}/{SRC}",
        "target": target or f"{MYSQL_URL}/{MY_DST}",
        "tables": [TABLE],
        "mode": "differential",
    }
    path.write_text(yaml.safe_dump(job))
    return path


def one_round(dtrace: DataTrace, pair: str, job: Path, rows: int) -> dict[str, Any]:
    """A full copy into an empty target, the change, the differential run; both timed."""
    generate(rows)
    reset_pg() if pair == "pg" else reset_mysql()
    env = dtrace.env(ephemeral=False)
    full = timed([executable(), "run", str(job)], env=env)
    changed = change_source(rows)
    again = timed([executable(), "run", str(job)], env=env)
    counted = count_pg("public") if pair == "pg" else count_mysql(MY_DST)
    source = count_mysql(SRC)
    return {
        "full": full.seconds,
        "resync": again.seconds,
        "ok": full.returncode == 0 and again.returncode == 0 and counted == source,
        "changed": changed,
        "output": again.output if again.returncode else "",
    }


def main(argv: list[str] | None = None) -> None:
    """Alternate the pairs for `--repeats` rounds; print and record the medians."""
    parser = argparse.ArgumentParser(prog="python -m bench.resync", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pairs", default="pg,my")
    parser.add_argument("--no-record", action="store_true", help="do not append to README")
    args = parser.parse_args(argv)
    pairs = [p for p in args.pairs.split(",") if p in PAIRS]
    results: dict[str, list[dict[str, Any]]] = {p: [] for p in pairs}
    with tempfile.TemporaryDirectory(prefix="dt-bench-resync-") as tmp:
        dtrace = DataTrace(Path(tmp))
        jobs = {pair: _job(Path(tmp), pair) for pair in pairs}
        dtrace.start()
        try:
            for _ in range(args.repeats):
                for pair in pairs:
                    results[pair].append(one_round(dtrace, pair, jobs[pair], args.rows))
        finally:
            dtrace.stop()
            drop_all()
    publish(_report(args, results), record=not args.no_record)


def _report(args: argparse.Namespace, results: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines = [
        f"### Differential re-sync, {args.rows:,} rows, then 1 % updated, 0.1 % inserted,"
        f" 0.1 % deleted; whole processes, median of {args.repeats}",
        "",
        machine(),
        "",
        "| pair | full copy s | differential re-sync s | re-sync / full | each re-sync s"
        " | target exact |",
        "|---|---:|---:|---:|---|---|",
    ]
    for pair, runs in results.items():
        full = statistics.median(r["full"] for r in runs)
        resync = statistics.median(r["resync"] for r in runs)
        each = ", ".join(f"{r['resync']:.1f}" for r in runs)
        exact = sum(r["ok"] for r in runs)
        lines.append(
            f"| {PAIRS[pair]} | {full:.2f} | {resync:.2f} | {resync / full:.2f}x | {each}"
            f" | {exact} of {len(runs)} |"
        )
        verdict = "met" if resync <= 0.25 * full and exact == len(runs) else "MISSED"
        lines.append(
            f"- goal {PAIRS[pair]}: differential <= 0.25x the full copy, exact: {verdict}"
            f" ({resync / full:.2f}x)"
        )
        for run in runs:
            if run["output"]:
                lines.append(f"- a failed re-sync said: {run['output'][-300:]!r}")
    return lines


if __name__ == "__main__":
    main()
