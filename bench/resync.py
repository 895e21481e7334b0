"""Repeat syncs: differential and incremental re-syncs against the full copy of the same table.

One generated table (bench.copy's 6 columns plus an `updated_at` cursor, 1,000,000
rows by default) is copied in full by `datatrace run` into an empty target (the first
run of a repeat-sync job is a full copy); then the source changes and the same job
runs again. `differential`: 1 % of the rows updated, 0.1 % inserted and 0.1 % deleted;
the re-sync compares both sides bucket by bucket and writes only what differs.
`incremental` (cursor `updated_at`): 1 % updated and 0.1 % inserted (this mode does
not see deletes); the re-sync copies the rows past the first run's mark. Both are
whole processes against the shared local Prefect server (started before timing).
Each run must exit 0 (every unit completed and verified) and leave the target's
`COUNT(*)` equal to the source's. Rounds alternate the cases; medians are reported,
with the ratio re-sync / full copy.

Issue 13 goals: differential re-sync <= 0.25x the full copy, incremental <= 0.10x,
target exact.

    python -m bench.resync [--rows N] [--repeats K] [--pairs pg,my]
        [--modes differential,incremental] [--no-record]
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
MODES = {"differential": 0.25, "incremental": 0.10}  # mode: goal as a share of the full copy
CURSOR = "updated_at"


def add_cursor() -> None:
    """The cursor column every update and insert of `change_source` raises, one second
    apart per row before that, with an index, as a table synced by its cursor has (not
    timed)."""
    mysql_cli(
        f"ALTER TABLE {SRC}.{TABLE} ADD COLUMN {CURSOR} DATETIME(6) NOT NULL"  # noqa: S608
        f" DEFAULT '2020-01-01 00:00:00'; UPDATE {SRC}.{TABLE}"
        f" SET {CURSOR} = '2020-01-01' + INTERVAL id SECOND;"
        f" CREATE INDEX ix_{CURSOR} ON {SRC}.{TABLE} ({CURSOR})"
    )


def change_source(rows: int, *, deletes: bool) -> dict[str, int]:
    """1 % updated, 0.1 % inserted, and 0.1 % deleted if `deletes` (spread over the keys)."""
    step_upd, step_del, added = 100, 1000, rows // 1000
    delete = f"DELETE FROM {TABLE} WHERE MOD(id, {step_del}) = 3;" if deletes else ""  # noqa: S608
    mysql_cli(
        f"USE {SRC};"  # noqa: S608 - fixed benchmark names and numbers: nothing to inject
        f"UPDATE {TABLE} SET amount = amount + 1, note = CONCAT('changed ', id),"
        f" {CURSOR} = NOW(6) WHERE MOD(id, {step_upd}) = 7;"
        f"{delete}"
        f"INSERT INTO {TABLE} SELECT seq, 'new', NOW(), seq / 100, seq, NULL, NOW(6)"
        f" FROM seq_{rows + 1}_to_{rows + added};"
    )
    gone = rows // step_del if deletes else 0
    return {"updated": rows // step_upd, "deleted": gone, "inserted": added}


def _job(tmp: Path, pair: str, mode: str) -> Path:
    target = pg_url().render_as_string(hide_password=False) if pair == "pg" else None
    path = tmp / f"resync-{pair}-{mode}.yaml"
    job: dict[str, Any] = {
        "name": f"bench-resync-{pair}-{mode}",
        "source": f"{MYSQL_URL}/{SRC}",
        "target": target or f"{MYSQL_URL}/{MY_DST}",
        "tables": [TABLE],
        "mode": mode,
    }
    if mode == "incremental":
        job["cursor"] = CURSOR
    path.write_text(yaml.safe_dump(job))
    return path


def one_round(dtrace: DataTrace, pair: str, mode: str, job: Path, rows: int) -> dict[str, Any]:
    """A full copy into an empty target, the change, the re-sync; both timed."""
    generate(rows)
    add_cursor()
    reset_pg() if pair == "pg" else reset_mysql()
    env = dtrace.env(ephemeral=False)
    full = timed([executable(), "run", str(job)], env=env)
    changed = change_source(rows, deletes=mode == "differential")
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
    parser.add_argument("--modes", default="differential,incremental")
    parser.add_argument("--no-record", action="store_true", help="do not append to README")
    args = parser.parse_args(argv)
    pairs = [p for p in args.pairs.split(",") if p in PAIRS]
    modes = [m for m in args.modes.split(",") if m in MODES]
    cases = [(pair, mode) for mode in modes for pair in pairs]
    results: dict[tuple[str, str], list[dict[str, Any]]] = {case: [] for case in cases}
    with tempfile.TemporaryDirectory(prefix="dt-bench-resync-") as tmp:
        dtrace = DataTrace(Path(tmp))
        jobs = {case: _job(Path(tmp), *case) for case in cases}
        dtrace.start()
        try:
            for _ in range(args.repeats):
                for case in cases:
                    results[case].append(one_round(dtrace, *case, jobs[case], args.rows))
        finally:
            dtrace.stop()
            drop_all()
    publish(_report(args, results), record=not args.no_record)


def _report(
    args: argparse.Namespace, results: dict[tuple[str, str], list[dict[str, Any]]]
) -> list[str]:
    lines = [
        f"### Re-syncs, {args.rows:,} rows, then 1 % updated, 0.1 % inserted (and for"
        f" differential 0.1 % deleted); whole processes, median of {args.repeats}",
        "",
        machine(),
        "",
        "| pair | mode | full copy s | re-sync s | re-sync / full | each re-sync s"
        " | target exact |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for (pair, mode), runs in results.items():
        full = statistics.median(r["full"] for r in runs)
        resync = statistics.median(r["resync"] for r in runs)
        each = ", ".join(f"{r['resync']:.1f}" for r in runs)
        exact = sum(r["ok"] for r in runs)
        lines.append(
            f"| {PAIRS[pair]} | {mode} | {full:.2f} | {resync:.2f} | {resync / full:.2f}x"
            f" | {each} | {exact} of {len(runs)} |"
        )
        goal = MODES[mode]
        verdict = "met" if resync <= goal * full and exact == len(runs) else "MISSED"
        lines.append(
            f"- goal {PAIRS[pair]}: {mode} <= {goal:.2f}x the full copy, exact: {verdict}"
            f" ({resync / full:.2f}x)"
        )
        for run in runs:
            if run["output"]:
                lines.append(f"- a failed re-sync said: {run['output'][-300:]!r}")
    return lines


if __name__ == "__main__":
    main()
