"""Incremental re-sync: copy only the rows whose cursor column moved since the last
verified run.

A job in `mode: incremental` names a `cursor`, a column every insert and update
raises (an `updated_at` TIMESTAMP, or an ever-growing integer). Each table's run
copies a window of rows, `cursor >= low`, where `low` is the mark of the job's last
verified run of that table minus the job's `lookback` (for transactions that commit
late; `>=` so rows sharing the mark's value are taken again). The mark a run sets is
the cursor's maximum read *before* it copies anything, kept in the unit's checkpoint
from its first report, so a resumed run sets the same mark and rows changed while it
was down (raised above that mark) are taken by the next run. The mark is stored with
the unit's figures and used only once the window verified (`Scope` in
`fingerprint.py`: both servers fingerprint their own rows with `cursor >= low`).

Deletes on the source are not seen in this mode (`mode: differential` sees them);
rows whose cursor is NULL are copied only by a full copy. A table the target does
not hold yet, or holds empty, or with no mark for this cursor, is copied in full.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from datatrace_tasks.exceptions import TableUnsupported
from datatrace_tasks.state.reporter import ProgressReporter
from datatrace_tasks.sync.catalog import SourceColumn, SourceTable
from datatrace_tasks.sync.checkpoint import decode_value, encode_value
from datatrace_tasks.sync.ddl import TargetTable
from datatrace_tasks.sync.differential import has_rows
from datatrace_tasks.sync.engines import Databases
from datatrace_tasks.sync.fingerprint import Scope
from datatrace_tasks.sync.job import Job
from datatrace_tasks.sync.rangecopy import Throttle
from datatrace_tasks.sync.ranges import KeyRange, from_checkpoint, to_checkpoint
from datatrace_tasks.sync.reader import batches
from datatrace_tasks.sync.sinks import SqlSink

CURSOR_KINDS = ("integer", "date", "datetime")


@dataclass(frozen=True)
class Window:
    """The rows one run copies, `cursor >= low` (None: all, a full copy), and `upto`,
    the cursor's maximum before the run read a row: the mark it sets once verified."""

    cursor: str
    low: Any | None
    upto: Any | None

    def to_json(self) -> dict[str, Any]:
        """The JSON-safe form kept in the unit's checkpoint."""
        return {
            "cursor": self.cursor,
            "low": encode_value(self.low),
            "upto": encode_value(self.upto),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Window:
        """The window `to_json` wrote."""
        return cls(data["cursor"], decode_value(data["low"]), decode_value(data["upto"]))

    @property
    def mark(self) -> dict[str, Any] | None:
        """The high-water mark this run sets, as the store keeps it (None: nothing read)."""
        if self.upto is None:
            return None
        return {"cursor": self.cursor, "value": encode_value(self.upto)}


def cursor_column(table: SourceTable, cursor: str) -> SourceColumn:
    """The table's cursor column, refused unless its values can only grow in order.

    Raises:
        TableUnsupported: the table has no such column, or it is not a date, datetime
            or integer column.
    """
    try:
        col = table.column(cursor)
    except KeyError:
        raise TableUnsupported(
            f"table {table.name!r} has no column {cursor!r}, the job's cursor (mode: incremental)"
        ) from None
    if col.kind not in CURSOR_KINDS:
        raise TableUnsupported(
            f"table {table.name!r}: cursor {cursor!r} is {col.column_type}; mode incremental"
            " needs a DATETIME, TIMESTAMP, DATE or integer cursor"
        )
    return col


def _below(value: Any, col: SourceColumn, lookback: float) -> Any:
    """`value` minus the lookback, in the cursor's own units."""
    if col.kind == "integer":
        return int(value) - math.ceil(lookback)
    if col.kind == "datetime":
        return value - dt.timedelta(seconds=lookback)
    return value - dt.timedelta(days=int(lookback // 86400))


def open_window(
    dbs: Databases, job: Job, table: SourceTable, spec: TargetTable, reporter: ProgressReporter
) -> Window:
    """This run's window: the one its checkpoint holds (a resume), or a new one from
    the job's last verified mark (`reporter.high_water`) and the cursor's maximum now."""
    checkpoint = reporter.checkpoint
    if checkpoint is not None and "incremental" in checkpoint:
        return Window.from_json(checkpoint["incremental"])
    assert job.cursor is not None  # noqa: S101 - the job validated it
    col = cursor_column(table, job.cursor)
    column = table.source_rows().c[col.name]
    with dbs.source.connect() as conn:
        upto = conn.execute(sa.select(sa.func.max(column))).scalar_one()
    mark = reporter.high_water
    low = None
    if mark is not None and mark.get("cursor") == col.name and has_rows(dbs, spec):
        low = _below(decode_value(mark["value"]), col, job.lookback)
    return Window(col.name, low, upto)


def scope(table: SourceTable, window: Window) -> Scope:
    """What verification compares of a window: both sides' rows with `cursor >= low`."""
    return Scope(table.column(window.cursor), window.low)


def copy_window(
    dbs: Databases,
    job: Job,
    table: SourceTable,
    spec: TargetTable,
    window: Window,
    reporter: ProgressReporter,
) -> dict[str, Any]:
    """Upsert the window's rows in key order, a checkpoint after each batch; returns
    the unit's `copy` figures."""

    def where(source: sa.Table | sa.Subquery) -> Any:
        return source.c[window.cursor] >= window.low

    checkpoint = reporter.checkpoint
    resumed = checkpoint is not None and "incremental" in checkpoint
    ranges = from_checkpoint(checkpoint) if resumed else None
    rng = ranges[0] if ranges else KeyRange(None, None)
    started = time.perf_counter()
    with dbs.source.connect() as conn:
        count = conn.execute(
            sa.select(sa.func.count()).where(where(table.source_rows()))
        ).scalar_one()
    reporter.set_total(int(count))
    stats: dict[str, Any] = {
        "path": "incremental",
        "since": str(window.low),
        "rows_read": 0,
        "batches": 0,
        "resumed_after": to_checkpoint([rng])["last_key"] if resumed else None,
    }
    sink, throttle = SqlSink(dbs.target, spec, "upsert"), Throttle(job.throttle_rows_per_second)
    for batch in batches(
        dbs.source,
        table,
        batch_size=job.batch_size,
        target_dialect=dbs.target.dialect.name,
        after=rng.start,
        where=where,
    ):
        sink.write_batch(batch.rows, replay=True)
        rng.last_key, rng.rows = batch.last_key, rng.rows + len(batch.rows)
        stats["rows_read"] += len(batch.rows)
        stats["batches"] += 1
        reporter.report(rng.rows, {**to_checkpoint([rng]), "incremental": window.to_json()})
        throttle.wait(len(batch.rows))
    stats["rows_written"] = stats["rows_read"]
    stats["copy_seconds"] = round(time.perf_counter() - started, 3)
    return stats
