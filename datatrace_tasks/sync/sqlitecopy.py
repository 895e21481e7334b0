"""SQLite to SQLite: the target database reads the source file itself.

A copy between two SQLite files needs no value in Python at all: the target
connection ATTACHes the source file and copies each page with one
`INSERT INTO ... SELECT ... WHERE key range`, so a page costs one statement instead
of a Python object per value. Pages are still key ranges of `batch_size` rows, each
in its own transaction, so checkpoints and resume work as on every other path. Only
tables whose values SQLite stores the same way on both sides take this path (no
TIME, whose target form differs), keyed by integers or text.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy.engine import Engine

from datatrace_tasks.sync.bulk import Key, Page
from datatrace_tasks.sync.catalog import SourceTable
from datatrace_tasks.sync.ddl import TargetTable
from datatrace_tasks.sync.rawsql import between_sql, plain_quote, source_rows

SCHEMA = "datatrace_src"
_KINDS = frozenset({"integer", "float", "decimal", "string", "binary", "date", "datetime"})
_KEY_KINDS = frozenset({"integer", "string"})


def attachable(source: Engine, target: Engine, table: SourceTable) -> bool:
    """Both are SQLite files and the table's values and keys copy verbatim."""
    if source.dialect.name != "sqlite" or target.dialect.name != "sqlite":
        return False
    path = source.url.database
    if not path or path == ":memory:" or path == target.url.database:
        return False
    kinds = {c.name: c.kind for c in table.columns}
    return set(kinds.values()) <= _KINDS and all(kinds[k] in _KEY_KINDS for k in table.key)


def key_pages(
    source: Engine, table: SourceTable, *, start: Key | None, hi: Key | None, batch_size: int
) -> Iterator[Page]:
    """Pages of keys only (`after < key <= last_key`, `count` rows) in key order."""
    keys = [plain_quote(source, k) for k in table.key]
    listed, desc = ", ".join(keys), ", ".join(f"{k} DESC" for k in keys)
    name = source_rows(source, table.name, table.row_filter, plain=True)
    raw: Any = source.raw_connection()
    try:
        cursor = raw.cursor()
        last = start
        while True:
            where, params = between_sql(keys, last, hi, "?")
            cursor.execute(
                f"SELECT {listed} FROM {name}{where} ORDER BY {listed}"  # noqa: S608
                f" LIMIT 1 OFFSET {batch_size - 1}",
                params,
            )
            found = cursor.fetchone()
            count = batch_size
            if found is None:  # the last page: its real last key and size
                cursor.execute(
                    f"SELECT {listed} FROM {name}{where} ORDER BY {desc} LIMIT 1",  # noqa: S608
                    params,
                )
                found = cursor.fetchone()
                if found is None:
                    return
                cursor.execute(f"SELECT COUNT(*) FROM {name}{where}", params)  # noqa: S608
                count = int(cursor.fetchone()[0])
            raw.rollback()
            page_hi = tuple(found)
            yield Page(last, page_hi, count)
            if count < batch_size or (hi is not None and page_hi == hi):
                return
            last = page_hi
    finally:
        raw.close()


class AttachWriter:
    """Copies each page with one INSERT ... SELECT from the attached source file."""

    def __init__(
        self,
        source: Engine,
        target: Engine,
        table: SourceTable,
        spec: TargetTable,
        write_mode: str,
    ) -> None:
        self.source_path = str(source.url.database)
        self.target = target
        names = [plain_quote(target, c.name) for c in spec.table.columns]
        self.keys = [plain_quote(target, k) for k in spec.key]
        cols = ", ".join(names)
        into = plain_quote(target, spec.table.name)
        rows = self.rows = f"{SCHEMA}.{plain_quote(target, table.name)}"
        if table.row_filter is not None:  # the matching rows, as a derived table
            rows = f"(SELECT * FROM {rows} WHERE ({table.row_filter}\n)) AS {SCHEMA}_rows"  # noqa: S608
            self.rows = f"{SCHEMA}_rows"
        self.insert = f"INSERT INTO main.{into} ({cols}) SELECT {cols} FROM {rows}"  # noqa: S608
        others = [n for n in names if n not in self.keys]
        conflict = f" ON CONFLICT ({', '.join(self.keys)})"
        update = ", ".join(f"{n} = excluded.{n}" for n in others)
        self.skip = conflict + " DO NOTHING"
        self.upsert = conflict + f" DO UPDATE SET {update}" if others else self.skip
        self.write_mode = write_mode
        self._raw: Any = None

    def write(self, page: Page, *, replay: bool = False) -> None:
        """Copy the source rows of the page's key range, in one transaction."""
        if self._raw is None:
            self._raw = self.target.raw_connection()
            self._raw.execute("ATTACH DATABASE ? AS " + SCHEMA, (self.source_path,))
        source_keys = [f"{self.rows}.{k}" for k in self.keys]
        where, params = between_sql(source_keys, page.after, page.last_key, "?")
        plain = self.write_mode == "append" and not replay
        tail = "" if plain else (self.skip if self.write_mode == "append" else self.upsert)
        sql = self.insert + (where or " WHERE 1") + tail
        try:
            self._raw.execute(sql, params)
            self._raw.commit()
        except BaseException:
            self._raw.rollback()
            raise

    def close(self) -> None:
        """Detach the source and return the connection."""
        if self._raw is not None:
            try:
                self._raw.execute("DETACH DATABASE " + SCHEMA)
            finally:
                self._raw.close()
                self._raw = None
