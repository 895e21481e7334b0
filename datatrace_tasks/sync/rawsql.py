"""Hand-built SQL for the hot path, run on raw DBAPI cursors (no statement compilation).

Identifiers are always quoted by the dialect (`quote`); values always travel as
`%s` parameters, never in the text. A `%` inside a quoted identifier is doubled,
because pymysql formats the statement with Python's `%` operator.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Engine


def plain_quote(engine: Engine, name: str) -> str:
    """`name` quoted as the server reads it, for a statement the driver sends as it is
    (no parameters: nothing formats it). SQLAlchemy's own `quote` doubles `%` for
    drivers that format with `%`, which is right only when parameters follow."""
    preparer = engine.dialect.identifier_preparer
    escaped = name.replace(preparer.escape_quote, preparer.escape_to_quote)
    return f"{preparer.initial_quote}{escaped}{preparer.final_quote}"


def quote(engine: Engine, name: str) -> str:
    """`name` quoted for a statement the driver formats with its parameters: a `%`
    doubled where the driver's placeholders are `%s` (pymysql, psycopg).

    Every raw statement built with it must be executed with a parameter sequence,
    even an empty one, so that the driver undoes the doubling.
    """
    quoted = plain_quote(engine, name)
    if engine.dialect.paramstyle in ("format", "pyformat"):
        return quoted.replace("%", "%%")
    return quoted


def source_rows(engine: Engine, name: str, row_filter: str | None, *, plain: bool = False) -> str:
    """What a raw statement on the source selects from: the quoted table, or the rows
    of it that match the job's row filter, as a derived table under the same name.
    `plain`: for a statement sent without parameters (see `plain_quote`)."""
    quoted = plain_quote(engine, name) if plain else quote(engine, name)
    if row_filter is None:
        return quoted
    condition = row_filter
    if not plain and engine.dialect.paramstyle in ("format", "pyformat"):
        condition = condition.replace("%", "%%")
    # The newline ends a `-- comment` the condition may close with.
    return f"(SELECT * FROM {quoted} WHERE ({condition}\n)) AS {quoted}"  # noqa: S608


def _key_terms(
    keys: Sequence[str], key: Sequence[Any], op: str, mark: str
) -> tuple[list[str], list[Any]]:
    """One `(k1 = v1 AND ... AND ki op vi)` term per key column, with its parameters."""
    terms, params = [], []
    for i, col in enumerate(keys):
        parts = [f"{keys[j]} = {mark}" for j in range(i)] + [f"{col} {op} {mark}"]
        terms.append("(" + " AND ".join(parts) + ")")
        params += [*key[:i], key[i]]
    return terms, params


def after_sql(keys: Sequence[str], key: Sequence[Any], mark: str = "%s") -> tuple[str, list[Any]]:
    """`(k1, k2, ...) > (v1, v2, ...)` spelled so MySQL uses a range on the key's index."""
    terms, params = _key_terms(keys, key, ">", mark)
    return f"{keys[0]} >= {mark} AND ({' OR '.join(terms)})", [key[0], *params]


def upto_sql(keys: Sequence[str], key: Sequence[Any], mark: str = "%s") -> tuple[str, list[Any]]:
    """`(k1, k2, ...) <= (v1, v2, ...)`, in the same index-friendly form."""
    terms, params = _key_terms(keys, key, "<", mark)
    terms.append("(" + " AND ".join(f"{col} = {mark}" for col in keys) + ")")
    params += list(key)
    return f"{keys[0]} <= {mark} AND ({' OR '.join(terms)})", [key[0], *params]


def between_sql(
    keys: Sequence[str], lo: Sequence[Any] | None, hi: Sequence[Any] | None, mark: str = "%s"
) -> tuple[str, list[Any]]:
    """` WHERE lo < key <= hi` (either end may be open), or an empty string; `mark` is
    the driver's placeholder (`?` for sqlite3)."""
    clauses, params = [], []
    if lo is not None:
        sql, p = after_sql(keys, lo, mark)
        clauses.append(f"({sql})")
        params += p
    if hi is not None:
        sql, p = upto_sql(keys, hi, mark)
        clauses.append(f"({sql})")
        params += p
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params
