"""Differential re-sync: bring a target that holds an earlier copy level with its source.

No cursor column is needed, and deletes are seen. Both servers fingerprint their rows
in buckets of keys (the verification's own aggregates, in buckets small enough to hold
about `ROWS_PER_BUCKET` rows each); only the buckets that differ are compared row by
row; the rows that differ or are missing are read again from the source and upserted,
the rows gone from the source are deleted; then the buckets that differed are
fingerprinted again on both servers and must agree (the others were proven equal by
the comparison itself). A run killed midway keeps nothing to resume: the next run
compares again, and whatever the killed run wrote is either already right or found
different again.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from datatrace_tasks.exceptions import VerificationFailed
from datatrace_tasks.state.reporter import ProgressReporter
from datatrace_tasks.sync.catalog import SourceTable
from datatrace_tasks.sync.ddl import TargetTable
from datatrace_tasks.sync.engines import Databases
from datatrace_tasks.sync.fingerprint import Buckets, Fingerprint, KeyRanges, Side
from datatrace_tasks.sync.repair import repair_rows
from datatrace_tasks.sync.verify import (
    BUCKETS,
    VerificationResult,
    differences,
    verified,
    wkb_only,
    xor_of,
)

ROWS_PER_BUCKET = 16
"""Rows in a bucket on average: a changed row makes about this many rows to compare."""

MAX_BUCKETS = 1 << 22


def bucket_count(rows: int) -> int:
    """Buckets for a table of about `rows` rows: fine enough that few rows are compared."""
    return max(BUCKETS, min(rows // ROWS_PER_BUCKET, MAX_BUCKETS))


def spread(dbs: Databases, table: SourceTable) -> Buckets:
    """The buckets of a table: ranges of its key when that is one integer column (its
    index serves a bucket's rows), else `bucket_count` buckets by a hash of the key."""
    count = bucket_count(table.estimated_rows)
    if len(table.key) != 1 or table.column(table.key[0]).kind != "integer":
        return count
    key = table.source_rows().c[table.key[0]]
    with dbs.source.connect() as conn:
        lo, hi = conn.execute(sa.select(sa.func.min(key), sa.func.max(key))).one()
    if lo is None:
        return count
    return KeyRanges(max(1, -(-(int(hi) - int(lo) + 1) // count)))


def has_rows(dbs: Databases, spec: TargetTable) -> bool:
    """Whether the target table exists and holds a row (else a full copy comes first)."""
    if spec.ddl is not None:
        return False
    with dbs.target.connect() as conn:
        found = conn.execute(sa.select(sa.literal(1)).select_from(spec.table).limit(1))
        return found.first() is not None


def resync_table(
    dbs: Databases, table: SourceTable, spec: TargetTable, reporter: ProgressReporter
) -> tuple[dict[str, Any], VerificationResult]:
    """Make the target table equal to the source by changing only what differs.

    Returns the unit's `copy` figures (buckets compared, rows written (upserted) and
    deleted, seconds spent comparing and writing) and its verification. The comparison
    is the proof for the buckets that were equal; the buckets that differed are
    fingerprinted again on both servers after the repair, and must now agree. The
    progress bar counts the source's rows as compared once the comparison is done.

    Raises:
        VerificationFailed: a repaired bucket still differs (the source changed meanwhile,
            or the target would not take a row as it is).
    """
    started = time.perf_counter()
    flat = wkb_only(dbs.source, dbs.target)
    src = Fingerprint(
        Side(dbs.source, table.name, table.columns, table.key, flat, None, table.row_filter)
    )
    dst = Fingerprint(Side(dbs.target, spec.table.name, table.columns, table.key, flat))
    buckets = spread(dbs, table)
    diff = differences(table, src, dst, allow_extra_rows=False, buckets=buckets)
    stats: dict[str, Any] = {
        "path": "differential",
        "buckets": buckets if isinstance(buckets, int) else f"key ranges of {buckets.width}",
        "buckets_differing": len(diff.buckets),
        "rows_read": len(diff.source_keys),
        "rows_written": len(diff.source_keys),
        "rows_deleted": len(diff.extra_keys),
        "compare_seconds": round(time.perf_counter() - started, 3),
    }
    reporter.set_total(diff.source_rows)
    reporter.report(diff.source_rows)
    rows, total = diff.source_rows, diff.source_total
    if diff.found:
        written = time.perf_counter()
        repair_rows(dbs, table, spec, diff)
        stats["write_seconds"] = round(time.perf_counter() - written, 3)
        checked = time.perf_counter()
        again = differences(
            table, src, dst, allow_extra_rows=False, buckets=buckets, only=diff.buckets
        )
        stats["verify_seconds"] = round(time.perf_counter() - checked, 3)
        if again.found:
            raise VerificationFailed(again.message, again)
        before = diff.chosen_source.values()
        rows += again.source_rows - sum(n for n, _ in before)
        total ^= xor_of(before) ^ again.source_total
    method = "server fingerprints by key bucket"
    return stats, verified(table, rows, rows, total, method=method, rechecked=len(diff.buckets))
