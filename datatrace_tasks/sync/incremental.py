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

import dataclasses
import datetime as dt
import math
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


def window_rows(dbs: Databases, table: SourceTable, window: Window) -> SourceTable:
    """The table narrowed to the window's rows, `cursor >= low`, as a row filter: every
    write path then copies the window as it copies a whole table (`LOAD DATA`,
    `COPY`, in key ranges with their checkpoints), upserting.

    The mark is written as the text the drivers send for a typed parameter of its
    kind (`_sql_literal`); it is our value, never the job's text.
    """
    column = dbs.source.dialect.identifier_preparer.quote(window.cursor)
    condition = f"{column} >= {_sql_literal(window.low)}"
    if table.row_filter is not None:
        condition = f"({table.row_filter}\n) AND {condition}"
    return dataclasses.replace(table, row_filter=condition)


def _sql_literal(value: Any) -> str:
    """An integer, date or datetime as SQL text, in the form pymysql and sqlite3 send a
    parameter of that type (microseconds only when there are some)."""
    if isinstance(value, dt.datetime):
        return f"'{value.isoformat(' ')}'"
    if isinstance(value, dt.date):
        return f"'{value.isoformat()}'"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"a cursor mark must be an integer, date or datetime, not {value!r}")
