"""The PostgreSQL bulk path: COPY, fed text the MySQL source server formats.

Profiling showed a copy to PostgreSQL spent most of its time making a Python object
of every value (pymysql parsing it) and formatting it again for COPY. From a MySQL
source no value needs to become a Python object: the source server writes each row
as one line of COPY text (tab-separated, `\\N` for NULL, backslash escapes, `\\\\x`
hex for bytes), and Python passes the lines on. A batch the target refuses (a value
PostgreSQL cannot take, such as a zero date or a NUL in text) is rolled back and
written again from typed rows, which fail with the exact error or succeed where the
text form was the only problem.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import psycopg
from sqlalchemy.engine import Engine

from datatrace_tasks.sync.bulk import BulkState, Key, Page
from datatrace_tasks.sync.catalog import SourceColumn, SourceTable
from datatrace_tasks.sync.ddl import TargetTable
from datatrace_tasks.sync.rawsql import plain_quote, quote, source_rows
from datatrace_tasks.sync.reader import Row

_NULL = "X'5C4E'"  # \N, spelled without backslashes so NO_BACKSLASH_ESCAPES cannot matter
_BYTES = "X'5C5C78'"  # \\x: a bytea literal's \x, its backslash escaped for COPY


def _escaped(text: str) -> str:
    # Backslash first, then the characters COPY text reads as separators.
    for char, escape in (("5C", "5C5C"), ("09", "5C74"), ("0A", "5C6E"), ("0D", "5C72")):
        text = f"REPLACE({text}, X'{char}', X'{escape}')"
    return text


def _piece(x: str, column: SourceColumn) -> str:
    kind = column.kind
    if kind == "binary":
        value = f"CONCAT({_BYTES}, HEX({x}))"
    elif kind == "geometry":
        value = f"CONCAT({_BYTES}, HEX(ST_AsWKB({x})))"
    elif kind == "bit":
        value = f"{x} + 0"
    elif column.single_float:  # the text of a FLOAT has 6 digits only
        value = f"{x} + 0e0"
    elif kind in ("integer", "decimal", "float", "date", "datetime", "time", "year"):
        value = x  # the server's text is PostgreSQL's input form (TIME as an interval)
    else:
        value = _escaped(f"CONVERT({x} USING utf8mb4)")
    return f"IFNULL({value}, {_NULL})"


class PgText:
    """The SQL of one table's COPY text, built by a MySQL source: one line per row, in
    the target table's column order."""

    def __init__(self, source: Engine, table: SourceTable, spec: TargetTable) -> None:
        pieces = [_piece(quote(source, c.name), table.column(c.name)) for c in spec.table.columns]
        self.line = f"CONVERT(CONCAT_WS(X'09', {', '.join(pieces)}) USING binary)"
        self.source_table = source_rows(source, table.name, table.row_filter)
        self.keys = [quote(source, name) for name in table.key]


class PgCopyWriter:
    """Writes pages to PostgreSQL with COPY, one transaction each.

    Append mode copies straight into the table (a duplicate key fails the batch);
    upsert, truncate and an append replay copy into a temporary staging table and
    merge with `INSERT ... SELECT ... ON CONFLICT`. A page of text lines the server
    refuses is written again from typed rows (`fetch_rows`).
    """

    def __init__(
        self,
        target: Engine,
        spec: TargetTable,
        write_mode: str,
        state: BulkState | None = None,
        fetch_rows: Callable[[Key | None, Key], list[Row]] | None = None,
    ) -> None:
        # COPY, the stage and the merge are sent without parameters: plain quoting.
        def q(name: str) -> str:
            return plain_quote(target, name)

        self.target = target
        self.spec = spec
        self.state = state
        self.fetch_rows = fetch_rows
        self.names = [c.name for c in spec.table.columns]
        cols = ", ".join(q(n) for n in self.names)
        table = q(spec.table.name)
        digest = hashlib.sha256(spec.table.name.encode()).hexdigest()[:16]
        stage = q(f"datatrace_stage_{digest}")
        self.direct = f"COPY {table} ({cols}) FROM STDIN"
        self.staged = f"COPY {stage} ({cols}) FROM STDIN"
        self.create_stage = (
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {stage}"
            f" (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        others = [n for n in self.names if n not in spec.key]
        conflict = f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {stage}"  # noqa: S608
        conflict += f" ON CONFLICT ({', '.join(q(k) for k in spec.key)})"
        nothing = conflict + " DO NOTHING"
        update = ", ".join(f"{q(n)} = EXCLUDED.{q(n)}" for n in others)
        self.merge_skip = nothing
        self.merge_update = conflict + f" DO UPDATE SET {update}" if others else nothing
        self.write_mode = write_mode
        self._raw: Any = None

    def write(self, page: Page, *, replay: bool = False) -> None:
        """COPY one page, merged on the key unless plainly appending."""
        if page.lines is not None and self.state is not None and self.state.enabled:
            try:
                self._copy(lambda copy: copy.write(b"\n".join(page.lines or []) + b"\n"), replay)
                return
            except psycopg.DataError:  # a value the text form cannot carry: retry typed
                self.state.fell_back()
        rows = page.rows
        if rows is None:
            assert self.fetch_rows is not None, "a page of lines needs fetch_rows"
            rows = self.fetch_rows(page.after, page.last_key)
        if not rows:
            return
        convert = [self.spec.converters.get(n) for n in self.names]

        def typed(copy: Any) -> None:
            for row in rows:
                values = [row[n] for n in self.names]
                copy.write_row([f(v) if f else v for f, v in zip(convert, values, strict=True)])

        self._copy(typed, replay)

    def _copy(self, feed: Callable[[Any], None], replay: bool) -> None:
        """One transaction: COPY what `feed` writes (into the stage unless appending)."""
        if self._raw is None:
            self._raw = self.target.raw_connection()
        plain = self.write_mode == "append" and not replay
        driver = self._raw.driver_connection
        try:
            with driver.cursor() as cursor:
                if not plain:
                    cursor.execute(self.create_stage)
                with cursor.copy(self.direct if plain else self.staged) as copy:
                    feed(copy)
                if not plain:
                    merge = self.merge_skip if self.write_mode == "append" else self.merge_update
                    cursor.execute(merge)
            driver.commit()
        except BaseException:
            driver.rollback()
            raise

    def close(self) -> None:
        """Return the connection to the pool."""
        if self._raw is not None:
            self._raw.close()
            self._raw = None
