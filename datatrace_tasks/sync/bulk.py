"""The bulk paths: MySQL to MySQL through LOAD DATA LOCAL INFILE, anything to PostgreSQL
through COPY.

Profiling showed the copy was bound by pure-Python work per value (pymysql parsing
and converting every field, then escaping it again for the INSERT). For a MySQL to
MySQL copy no value needs to become a Python object at all: the source server
formats each row as one line of LOAD DATA text (escaped, `\\N` for NULL, hex for
binary columns), Python only joins the lines into a file, and the target server
parses them. A batch that does not load cleanly (the server refuses LOCAL INFILE,
or the load raised any warning, e.g. a value the target column would truncate) is
rolled back and written again through the exact batched upsert of `SqlSink`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine

from datatrace_tasks.sync.catalog import SourceTable
from datatrace_tasks.sync.ddl import TargetTable
from datatrace_tasks.sync.infile import offer
from datatrace_tasks.sync.rawsql import between_sql, quote
from datatrace_tasks.sync.reader import Row, batches
from datatrace_tasks.sync.sinks import SqlSink

Key = tuple[Any, ...]

# Server or client refused LOAD DATA LOCAL: not allowed with this server (1148),
# rejected by the client (2068), capability disabled (3948 MySQL, 4166 MariaDB).
_REFUSED = frozenset({1148, 2068, 3948, 4166})
_NULL = "X'5C4E'"  # \N, spelled without backslashes so NO_BACKSLASH_ESCAPES cannot matter
_NUMERIC_KINDS = frozenset({"integer", "decimal", "float", "date", "datetime", "time", "year"})


@dataclass
class Page:
    """One batch: keys `after < k <= last_key`, as LOAD DATA lines or as rows."""

    after: Key | None
    last_key: Key
    count: int
    lines: list[bytes] | None = None
    rows: list[Row] | None = None


class BulkState:
    """Whether the target still takes LOAD DATA LOCAL; shared by the ranges of a unit."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.fallbacks = 0
        self.lock = threading.Lock()

    def refuse(self) -> None:
        """The server refused LOCAL INFILE: every later batch takes the upsert path."""
        self.enabled = False

    def fell_back(self) -> None:
        """Count one batch written through the fallback path."""
        with self.lock:
            self.fallbacks += 1


def _escaped_text(col: str) -> str:
    # Backslash first, then tab and newline: the escapes LOAD DATA's defaults undo.
    text = f"CONVERT({col} USING utf8mb4)"
    text = f"REPLACE({text}, X'5C', X'5C5C')"
    text = f"REPLACE({text}, X'09', X'5C74')"
    return f"REPLACE({text}, X'0A', X'5C6E')"


class MysqlTsv:
    """The SQL of one table's LOAD DATA text: the line the source server builds per row,
    and the column list and SET clause that read it back on the target."""

    def __init__(self, source: Engine, target: Engine, table: SourceTable) -> None:
        pieces, targets, sets = [], [], []
        for i, column in enumerate(table.columns):
            src, dst = quote(source, column.name), quote(target, column.name)
            kind = column.kind
            if kind in ("binary", "geometry"):
                # GEOMETRY too: its internal bytes (SRID + WKB) go back verbatim.
                pieces.append(f"IFNULL(HEX({src}), {_NULL})")
                targets.append(f"@v{i}")
                sets.append(f"{dst} = UNHEX(@v{i})")
            elif kind == "bit":
                pieces.append(f"IFNULL({src} + 0, {_NULL})")
                targets.append(f"@v{i}")
                sets.append(f"{dst} = CAST(@v{i} AS UNSIGNED)")
            elif column.single_float:  # the server's text of a FLOAT has 6 digits
                pieces.append(f"IFNULL({src} + 0e0, {_NULL})")
                targets.append(dst)
            elif kind in _NUMERIC_KINDS:
                pieces.append(f"IFNULL({src}, {_NULL})")
                targets.append(dst)
            else:
                pieces.append(f"IFNULL({_escaped_text(src)}, {_NULL})")
                targets.append(dst)
        self.line = f"CONVERT(CONCAT_WS(X'09', {', '.join(pieces)}) USING binary)"
        self.columns = f"({', '.join(targets)})"
        self.set = f" SET {', '.join(sets)}" if sets else ""
        self.source_table = quote(source, table.name)
        self.target_table = quote(target, table.name)
        self.keys = [quote(source, name) for name in table.key]


def mysql_pages(
    source: Engine,
    table: SourceTable,
    tsv: MysqlTsv,
    *,
    start: Key | None,
    hi: Key | None,
    batch_size: int,
    as_lines: Callable[[], bool],
    target_dialect: str,
) -> Iterator[Page]:
    """Pages of a MySQL source in key order within `(start, hi]`.

    Each page is two short reads: the key `batch_size` rows on (an index scan), then
    the rows up to it, as LOAD DATA lines while `as_lines()` holds, else as rows.
    Read transactions end between pages, so no snapshot is held while writing.
    """
    keys = ", ".join(tsv.keys)
    desc = ", ".join(f"{k} DESC" for k in tsv.keys)
    raw = source.raw_connection()
    try:
        cursor = raw.cursor()
        last = start
        while True:
            where, params = between_sql(tsv.keys, last, hi)
            cursor.execute(
                f"SELECT {keys} FROM {tsv.source_table}{where}"  # noqa: S608 (quoted names)
                f" ORDER BY {keys} LIMIT 1 OFFSET {batch_size - 1}",
                params,
            )
            found = cursor.fetchone()
            if found is None:  # the last page: find its real last key
                cursor.execute(
                    f"SELECT {keys} FROM {tsv.source_table}{where}"  # noqa: S608
                    f" ORDER BY {desc} LIMIT 1",
                    params,
                )
                found = cursor.fetchone()
                if found is None:
                    raw.rollback()
                    return
            page_hi = tuple(found)
            if as_lines():
                where, params = between_sql(tsv.keys, last, page_hi)
                cursor.execute(f"SELECT {tsv.line} FROM {tsv.source_table}{where}", params)  # noqa: S608
                lines = [row[0] for row in cursor.fetchall()]
                raw.rollback()
                page = Page(last, page_hi, len(lines), lines=lines)
            else:
                raw.rollback()
                rows = read_rows(source, table, last, page_hi, target_dialect)
                page = Page(last, page_hi, len(rows), rows=rows)
            yield page
            if page.count < batch_size or (hi is not None and page_hi == hi):
                return
            last = page_hi
    finally:
        raw.close()


def read_rows(
    source: Engine, table: SourceTable, after: Key | None, upto: Key, target_dialect: str
) -> list[Row]:
    """Every row with `after < key <= upto`, as Python values (the exact path)."""
    out: list[Row] = []
    for batch in batches(
        source,
        table,
        batch_size=1_000_000_000,
        target_dialect=target_dialect,
        after=after,
        until=upto,
    ):
        out += batch.rows
    return out


def row_pages(
    source: Engine,
    table: SourceTable,
    *,
    start: Key | None,
    hi: Key | None,
    batch_size: int,
    target_dialect: str,
) -> Iterator[Page]:
    """Pages of Python rows from any source (keyset pagination through SQLAlchemy)."""
    last = start
    for batch in batches(
        source,
        table,
        batch_size=batch_size,
        target_dialect=target_dialect,
        after=start,
        until=hi,
    ):
        yield Page(last, batch.last_key, len(batch.rows), rows=batch.rows)
        last = batch.last_key


def _spool_dir() -> str | None:
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


class MysqlLoadWriter:
    """Writes pages to a MySQL table with LOAD DATA LOCAL INFILE, one transaction each.

    `REPLACE` in upsert and truncate modes, a plain load in append mode (checked for
    warnings, so a duplicate key is never silently skipped). Pages given as rows, a
    replayed page, a refused load or a load with warnings go through `SqlSink`.
    """

    def __init__(
        self,
        target: Engine,
        spec: TargetTable,
        tsv: MysqlTsv,
        write_mode: str,
        state: BulkState,
        fetch_rows: Callable[[Key | None, Key], list[Row]],
    ) -> None:
        self.sink = SqlSink(target, spec, write_mode)
        self.state = state
        self.fetch_rows = fetch_rows
        self.target = target
        mode = "" if write_mode == "append" else " REPLACE"
        self.sql = (
            f"LOAD DATA LOCAL INFILE %s{mode} INTO TABLE {tsv.target_table}"
            f" CHARACTER SET utf8mb4 {tsv.columns}{tsv.set}"
        )
        fd, self.path = tempfile.mkstemp(prefix="datatrace-", suffix=".tsv", dir=_spool_dir())
        os.close(fd)
        self._raw: Any = None

    def write(self, page: Page, *, replay: bool = False) -> None:
        """Write one page atomically; LOAD DATA when possible, else the exact upsert."""
        if self.stage(page, replay=replay):
            self.commit()
            return
        rows = page.rows if page.rows is not None else self.fetch_rows(page.after, page.last_key)
        self.state.fell_back()
        self.sink.write_batch(rows, replay=replay)

    def stage(self, page: Page, *, replay: bool = False) -> bool:
        """LOAD one page without committing; False (nothing left open) if it cannot be
        loaded cleanly, and the page must go through `write`."""
        if page.lines is None or not self.state.enabled or replay:
            return False
        with open(self.path, "wb") as spool:
            spool.write(b"\n".join(page.lines))
            spool.write(b"\n")
        if self._raw is None:
            self._raw = self.target.raw_connection()
        offer(self._raw, self.path)
        cursor = self._raw.cursor()
        try:
            cursor.execute(self.sql, (self.path,))
            cursor.execute("SELECT @@warning_count")
            warnings = int(cursor.fetchone()[0])
        except Exception as exc:
            self._raw.rollback()
            code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
            if code in _REFUSED:
                self.state.refuse()
                return False
            raise
        finally:
            cursor.close()
        if warnings:  # LOCAL turns errors into warnings: redo this batch the strict way
            self._raw.rollback()
            return False
        return True

    def commit(self) -> None:
        """Commit the staged page."""
        self._raw.commit()

    def rollback(self) -> None:
        """Drop the staged page."""
        self._raw.rollback()

    def close(self) -> None:
        """Return the connection and remove the spool file."""
        if self._raw is not None:
            offer(self._raw, None)
            self._raw.close()
            self._raw = None
        try:
            os.unlink(self.path)
        except OSError:
            pass


class PgCopyWriter:
    """Writes row pages to PostgreSQL with COPY, one transaction each.

    Append mode copies straight into the table (a duplicate key fails the batch);
    upsert, truncate and an append replay copy into a temporary staging table and
    merge with `INSERT ... SELECT ... ON CONFLICT`.
    """

    def __init__(self, target: Engine, spec: TargetTable, write_mode: str) -> None:
        q = target.dialect.identifier_preparer.quote
        self.target = target
        self.spec = spec
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
        """COPY one page of rows, merged on the key unless plainly appending."""
        rows = page.rows or []
        if not rows:
            return
        if self._raw is None:
            self._raw = self.target.raw_connection()
        converters = self.spec.converters
        convert = [converters.get(n) for n in self.names]
        plain = self.write_mode == "append" and not replay
        driver = self._raw.driver_connection
        try:
            with driver.cursor() as cursor:
                if not plain:
                    cursor.execute(self.create_stage)
                with cursor.copy(self.direct if plain else self.staged) as copy:
                    for row in rows:
                        values = [row[n] for n in self.names]
                        copy.write_row(
                            [f(v) if f else v for f, v in zip(convert, values, strict=True)]
                        )
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
            offer(self._raw, None)
            self._raw.close()
            self._raw = None


class SinkWriter:
    """Any other target (SQLite): `SqlSink`'s batched upserts."""

    def __init__(self, target: Engine, spec: TargetTable, write_mode: str) -> None:
        self.sink = SqlSink(target, spec, write_mode)

    def write(self, page: Page, *, replay: bool = False) -> None:
        """Upsert or insert one page of rows."""
        self.sink.write_batch(page.rows or [], replay=replay)

    def close(self) -> None:
        """Nothing held."""
