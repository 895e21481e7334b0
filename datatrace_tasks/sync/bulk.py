"""The MySQL to MySQL bulk path, LOAD DATA LOCAL INFILE (PostgreSQL's COPY is in
`pgcopy.py`), and the pages both read.

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

import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.engine import Engine

from datatrace_tasks.sync.catalog import SourceTable
from datatrace_tasks.sync.ddl import TargetTable
from datatrace_tasks.sync.infile import offer
from datatrace_tasks.sync.rawsql import between_sql, quote, source_rows
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


class LineSql(Protocol):
    """What `mysql_pages` reads with: the SQL of a row's line, the table, its keys."""

    line: str
    source_table: str
    keys: list[str]


def _escaped_bytes(col: str) -> str:
    # Backslash first, then tab and newline: the escapes LOAD DATA's defaults undo.
    text = f"REPLACE(CAST({col} AS BINARY), X'5C', X'5C5C')"
    text = f"REPLACE({text}, X'09', X'5C74')"
    return f"REPLACE({text}, X'0A', X'5C6E')"


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
            if column.generated:
                continue  # the target computes it from the others (same DDL)
            src, dst = quote(source, column.name), quote(target, column.name)
            kind = column.kind
            if kind == "binary":
                # The bytes themselves, escaped: hex would double a BLOB's size, and a
                # line over the packet limit comes back NULL (a 9 MB BLOB once did).
                pieces.append(f"IFNULL({_escaped_bytes(src)}, {_NULL})")
                targets.append(dst)
            elif kind == "geometry":
                # Its internal bytes (SRID + WKB) go back verbatim.
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
        self.source_table = source_rows(source, table.name, table.row_filter)
        self.target_table = quote(target, table.target)
        self.keys = [quote(source, name) for name in table.key]


def _lines(
    cursor: Any, tsv: LineSql, where: str, params: list[Any]
) -> tuple[int, list[bytes] | None]:
    """A page's rows and lines. The server joins the lines into one value when they fit
    in a packet (one field for pymysql to parse, not one per row: a second of client
    CPU per million rows); when they do not (GROUP_CONCAT warns that it cut), one per row;
    when even one row's line does not fit (a BLOB of more than half the packet, as hex),
    the server makes it NULL with a warning, and the page is read as rows (None)."""
    cursor.execute(
        f"SELECT COUNT(*), GROUP_CONCAT({tsv.line} SEPARATOR X'0A')"  # noqa: S608
        f" FROM {tsv.source_table}{where}",
        params,
    )
    count, joined = cursor.fetchone()
    cursor.execute("SELECT @@warning_count")
    if int(cursor.fetchone()[0]) == 0:
        return int(count), [] if joined is None else [bytes(joined)]
    cursor.execute(f"SELECT {tsv.line} FROM {tsv.source_table}{where}", params)  # noqa: S608
    lines = [row[0] for row in cursor.fetchall()]
    cursor.execute("SELECT @@warning_count")
    if int(cursor.fetchone()[0]) != 0:
        return len(lines), None
    return len(lines), lines


def mysql_pages(
    source: Engine,
    table: SourceTable,
    tsv: LineSql,
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
        cursor.execute("SET SESSION group_concat_max_len = @@max_allowed_packet")
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
            lines = None
            if as_lines():
                where, params = between_sql(tsv.keys, last, page_hi)
                count, lines = _lines(cursor, tsv, where, params)
            raw.rollback()
            if lines is not None:
                page = Page(last, page_hi, count, lines=lines)
            else:  # rows wanted, or a line too long for a packet: this page goes typed
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


class SinkWriter:
    """Any other target (SQLite): `SqlSink`'s batched upserts."""

    def __init__(self, target: Engine, spec: TargetTable, write_mode: str) -> None:
        self.sink = SqlSink(target, spec, write_mode)

    def write(self, page: Page, *, replay: bool = False) -> None:
        """Upsert or insert one page of rows."""
        self.sink.write_batch(page.rows or [], replay=replay)

    def close(self) -> None:
        """Nothing held."""
