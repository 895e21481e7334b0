"""Values MySQL keeps that another target cannot store: a zero date or a zero month or
day in a date (PostgreSQL and SQLite have no such date) and a NUL character in text
(PostgreSQL text cannot hold one). Found on the source before any row is written, so
such a table is refused with its column and key instead of failing halfway.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from datatrace_tasks.exceptions import TableUnsupported
from datatrace_tasks.sync.catalog import SourceColumn, SourceTable
from datatrace_tasks.sync.engines import is_mysql
from datatrace_tasks.sync.rawsql import quote, source_rows

_DATE_KINDS = frozenset({"date", "datetime"})
_TEXT_KINDS = frozenset({"string", "enum", "set"})


def _condition(source: Engine, col: SourceColumn, target: str) -> tuple[str, str] | None:
    """The SQL that finds a value of `col` the target cannot store, and what it is."""
    name = quote(source, col.name)
    if col.kind in _DATE_KINDS:
        return f"(MONTH({name}) = 0 OR DAYOFMONTH({name}) = 0)", "a zero date, month or day"
    if col.kind in _TEXT_KINDS and target == "postgresql":
        # A byte search of its UTF-8 (0x00 is only ever NUL there): twice as fast as
        # searching characters, and right for a column of any character set.
        return (
            f"LOCATE(X'00', CAST(CONVERT({name} USING utf8mb4) AS BINARY)) > 0",
            "a NUL character",
        )
    return None


def conditions(source: Engine, table: SourceTable, target: str) -> list[tuple[str, str, str]]:
    """(column, SQL condition, what it finds) for each column of `table` that may hold
    values `target` cannot store; none from a non-MySQL source or to a MySQL target."""
    if not is_mysql(source) or target in ("mysql", "mariadb"):
        return []
    found = []
    for col in table.columns:
        condition = _condition(source, col, target)
        if condition is not None:
            found.append((col.name, *condition))
    return found


def refuse_unstorable(source: Engine, table: SourceTable, target: str) -> None:
    """Refuse the table if its source rows hold a value the target cannot store: one
    read that stops at the first such row (a scan of the table when there is none).

    Raises:
        TableUnsupported: naming the column, the value's kind, the key and what to do.
    """
    found = conditions(source, table, target)
    if not found:
        return
    which = " ".join(f"WHEN {sql} THEN {i}" for i, (_, sql, _) in enumerate(found))
    keys = [quote(source, k) for k in table.key]
    listed = ", ".join([f"CASE {which} END", *keys])
    rows = source_rows(source, table.name, table.row_filter)
    where = " OR ".join(sql for _, sql, _ in found)
    with source.connect() as conn:
        hit = conn.exec_driver_sql(
            f"SELECT {listed} FROM {rows} WHERE {where} LIMIT 1",  # noqa: S608
            (),
        ).first()
    if hit is None:
        return
    column, _, what = found[int(hit[0])]
    at = f" at key {', '.join(map(str, hit[1:]))}" if table.key else ""
    where_to = {"postgresql": "PostgreSQL", "sqlite": "SQLite"}.get(target, target)
    raise TableUnsupported(
        f"table {table.name!r}: column {column!r} holds {what}{at}, which {where_to} cannot"
        " store; nothing was written. Leave the column out (table_settings exclude_columns)"
        " or those rows (table_settings where), or correct them on the source"
    )
