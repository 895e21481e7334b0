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

from bench import MYSQL_URL, machine, mysql_cli, peer_dlt, publish
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


def one_round(
    dtrace: DataTrace, pair: str, mode: str, job: Path, rows: int, dlt: Path | None
) -> dict[str, Any]:
    """A full copy into an empty target, the change, the re-sync; both timed. With `dlt`
    (its interpreter), dlt's first and incremental loads of the same states are timed
    too, each right after DataTrace's, into a schema of its own."""
    generate(rows)
    add_cursor()
    reset_pg() if pair == "pg" else reset_mysql()
    env = dtrace.env(ephemeral=False)
    full = timed([executable(), "run", str(job)], env=env)
    peer: dict[str, Any] = {}
    if dlt is not None:
        peer_dlt.forget(job.parent)
        first = peer_dlt.load(dlt, job.parent, f"{MYSQL_URL}/{SRC}", pg_url(), TABLE, CURSOR)
        peer = {"dlt_full": first.seconds, "dlt_ok": first.returncode == 0}
    changed = change_source(rows, deletes=mode == "differential")
    again = timed([executable(), "run", str(job)], env=env)
    counted = count_pg("public") if pair == "pg" else count_mysql(MY_DST)
    source = count_mysql(SRC)
    if dlt is not None:
        later = peer_dlt.load(dlt, job.parent, f"{MYSQL_URL}/{SRC}", pg_url(), TABLE, CURSOR)
        same = count_pg(peer_dlt.DATASET) == source
        peer.update(dlt_resync=later.seconds, dlt_ok=peer["dlt_ok"] and later.returncode == 0)
        peer["dlt_ok"] = peer["dlt_ok"] and same
        peer["dlt_output"] = "" if peer["dlt_ok"] else later.output[-300:]
    return {
        "full": full.seconds,
        "resync": again.seconds,
        "ok": full.returncode == 0 and again.returncode == 0 and counted == source,
        "changed": changed,
        "output": again.output if again.returncode else "",
        **peer,
    }


def main(argv: list[str] | None = None) -> None:
    """Alternate the pairs for `--repeats` rounds; print and record the medians."""
    parser = argparse.ArgumentParser(prog="python -m bench.resync", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pairs", default="pg,my")
    parser.add_argument("--modes", default="differential,incremental")
    parser.add_argument(
        "--no-dlt", action="store_true", help="do not set dlt beside the incremental re-sync"
    )
    parser.add_argument("--no-record", action="store_true", help="do not append to README")
    args = parser.parse_args(argv)
    pairs = [p for p in args.pairs.split(",") if p in PAIRS]
    modes = [m for m in args.modes.split(",") if m in MODES]
    cases = [(pair, mode) for mode in modes for pair in pairs]
    results: dict[tuple[str, str], list[dict[str, Any]]] = {case: [] for case in cases}
    with tempfile.TemporaryDirectory(prefix="dt-bench-resync-") as tmp:
        dtrace = DataTrace(Path(tmp))
        jobs = {case: _job(Path(tmp), *case) for case in cases}
        dlt = None if args.no_dlt or "incremental" not in modes else peer_dlt.python()
        dtrace.start()
        try:
            for _ in range(args.repeats):
                for pair, mode in cases:
                    with_dlt = dlt if (pair, mode) == ("pg", "incremental") else None
                    run = one_round(dtrace, pair, mode, jobs[pair, mode], args.rows, with_dlt)
                    results[pair, mode].append(run)
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
        if runs and "dlt_resync" in runs[0]:
            lines += _dlt_lines(runs, resync)
    return lines


def _dlt_lines(runs: list[dict[str, Any]], resync: float) -> list[str]:
    """dlt's loads of the same states beside DataTrace's incremental re-sync."""
    full = statistics.median(r["dlt_full"] for r in runs)
    later = statistics.median(r["dlt_resync"] for r in runs)
    exact = sum(r["dlt_ok"] for r in runs)
    lines = [
        f"- dlt (sql_table, pyarrow, incremental on {CURSOR}, merge; no verification):"
        f" first load {full:.2f} s, incremental load {later:.2f} s ({later / full:.2f}x its"
        f" own first load), target count equal {exact} of {len(runs)};"
        f" DataTrace's incremental re-sync / dlt's: {resync / later:.2f}x",
    ]
    for run in runs:
        if run.get("dlt_output"):
            lines.append(f"- dlt said: {run['dlt_output']!r}")
    return lines


if __name__ == "__main__":
    main()
