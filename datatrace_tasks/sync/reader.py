"""Reading a source table in key order, one bounded batch at a time (keyset pagination)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from datatrace_tasks.sync.catalog import SourceTable

Row = dict[str, Any]


@dataclass(frozen=True)
class Batch:
    """Rows of one page and the key of its last row, where the next page starts after."""

    rows: list[Row]
    last_key: tuple[Any, ...]


def after_key(columns: Sequence[sa.ColumnElement[Any]], key: Sequence[Any]) -> Any:
    """`(k1, k2, ...) > (:v1, :v2, ...)` in a form every dialect can run on an index.

    Spelled as `k1 >= :v1 AND (k1 > :v1 OR (k1 = :v1 AND k2 > :v2) OR ...)`: the leading
    `k1 >=` gives MySQL a range on the key's index, the OR terms make it exact.
    """
    terms = []
    for i, col in enumerate(columns):
        equal = [columns[j] == key[j] for j in range(i)]
        terms.append(sa.and_(*equal, col > key[i]))
    return sa.and_(columns[0] >= key[0], sa.or_(*terms))


def upto_key(columns: Sequence[sa.ColumnElement[Any]], key: Sequence[Any]) -> Any:
    """`(k1, k2, ...) <= (:v1, :v2, ...)`, spelled like `after_key` for the same index use."""
    terms = []
    for i, col in enumerate(columns):
        equal = [columns[j] == key[j] for j in range(i)]
        terms.append(sa.and_(*equal, col < key[i]))
    terms.append(sa.and_(*(col == key[i] for i, col in enumerate(columns))))
    return sa.and_(columns[0] <= key[0], sa.or_(*terms))


def projection(
    table: SourceTable, sa_table: sa.Table | sa.Subquery, target_dialect: str
) -> list[Any]:
    """What to select per column so the value can be written to `target_dialect` exactly.

    MySQL targets get GEOMETRY's internal bytes (SRID + WKB) verbatim, so the copy is
    byte-identical; other targets get standard WKB from `ST_AsWKB`. A FLOAT is read as
    the DOUBLE that holds it (`as_double`).
    """
    out: list[Any] = []
    for col in table.columns:
        column = sa_table.c[col.name]
        if col.kind == "geometry" and target_dialect not in ("mysql", "mariadb"):
            out.append(sa.func.ST_AsWKB(column, type_=sa.LargeBinary()).label(col.name))
        elif col.single_float:
            out.append(as_double(column).label(col.name))
        else:
            out.append(column)
    return out


def as_double(column: sa.ColumnElement[Any]) -> sa.ColumnElement[float]:
    """`column + 0e0`: a MySQL FLOAT as the DOUBLE that holds it exactly (not 6 digits)."""
    return sa.type_coerce(column + sa.literal_column("0e0"), sa.Double())


def batches(
    engine: Engine,
    table: SourceTable,
    *,
    batch_size: int,
    target_dialect: str,
    after: Sequence[Any] | None = None,
    until: Sequence[Any] | None = None,
    where: Callable[[sa.Table | sa.Subquery], Any] | None = None,
) -> Iterator[Batch]:
    """Yield the table's rows in key order, `batch_size` at a time, after `after`
    and up to `until` (inclusive; None: to the end), only those matching `where`
    (called with the Table read, it returns a condition on its columns).

    Each page is its own short read, so no snapshot or cursor is held while the
    caller writes; memory holds one page whatever the table size.
    """
    sa_table = table.source_rows()
    keys = [sa_table.c[name] for name in table.key]
    names = [col.name for col in table.columns]
    base = sa.select(*projection(table, sa_table, target_dialect)).order_by(*keys)
    if until is not None:
        base = base.where(upto_key(keys, until))
    if where is not None:
        base = base.where(where(sa_table))
    last = tuple(after) if after is not None else None
    with engine.connect() as conn:
        while True:
            stmt = base if last is None else base.where(after_key(keys, last))
            result = conn.execute(stmt.limit(batch_size)).all()
            conn.rollback()  # end the read transaction between pages
            if not result:
                return
            rows = [dict(zip(names, row, strict=True)) for row in result]
            last = tuple(rows[-1][name] for name in table.key)
            yield Batch(rows, last)
            if len(rows) < batch_size:
                return
