"""Re-copying just the rows verification found different.

A resumed unit whose copy is complete but whose verification failed (a crash between
the last batch and the check, a target edited by hand, a copy defect since fixed)
does not need the whole table again: verification names the differing rows by key
bucket, so those rows are read from the source through the exact typed path and
upserted, rows only on the target are deleted, and the table is verified again.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from datatrace_tasks.sync.catalog import SourceTable
from datatrace_tasks.sync.ddl import TargetTable
from datatrace_tasks.sync.engines import Databases
from datatrace_tasks.sync.fingerprint import Fingerprint, Side
from datatrace_tasks.sync.reader import projection
from datatrace_tasks.sync.sinks import SqlSink
from datatrace_tasks.sync.verify import Differences, wkb_only

_CHUNK = 500  # keys per statement


def _matching(columns: list[Any], keys: list[tuple[Any, ...]]) -> Any:
    if len(columns) == 1:
        return columns[0].in_([k[0] for k in keys])
    return sa.tuple_(*columns).in_(keys)


def repair_rows(dbs: Databases, table: SourceTable, spec: TargetTable, diff: Differences) -> int:
    """Upsert the source rows `diff` names and delete the target-only ones; returns how
    many rows were written or deleted."""
    flat = wkb_only(dbs.source, dbs.target)
    src = Fingerprint(
        Side(dbs.source, table.name, table.columns, table.key, flat, None, table.row_filter)
    )
    dst = Fingerprint(Side(dbs.target, spec.table.name, table.columns, table.key, flat))
    chosen, buckets = set(diff.buckets), diff.bucket_count
    # The comparison read the key values with the row hashes; else look them up now.
    wanted = list(diff.source_values or ()) if diff.source_values is not None else []
    if diff.source_values is None and diff.source_keys:
        wanted = src.key_values(buckets, chosen, set(diff.source_keys))
    unwanted = list(diff.extra_values or ()) if diff.extra_values is not None else []
    if diff.extra_values is None and diff.extra_keys:
        unwanted = dst.key_values(buckets, chosen, set(diff.extra_keys))
    source_table = table.source_rows()
    select = sa.select(*projection(table, source_table, dbs.target.dialect.name))
    source_keys = [source_table.c[name] for name in table.key]
    names = [c.name for c in table.columns]
    sink = SqlSink(dbs.target, spec, "upsert")
    for i in range(0, len(wanted), _CHUNK):
        chunk = wanted[i : i + _CHUNK]
        with dbs.source.connect() as conn:
            found = conn.execute(select.where(_matching(source_keys, chunk))).all()
        sink.write_batch([dict(zip(names, row, strict=True)) for row in found])
    # Key values as the target's driver returned them: bound untyped, as they were read.
    plain = sa.table(spec.table.name, *(sa.column(name) for name in table.key))
    target_keys = [plain.c[name] for name in table.key]
    for i in range(0, len(unwanted), _CHUNK):
        chunk = unwanted[i : i + _CHUNK]
        with dbs.target.begin() as conn:
            conn.execute(sa.delete(plain).where(_matching(target_keys, chunk)))
    return len(wanted) + len(unwanted)
