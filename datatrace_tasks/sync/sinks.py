"""Where a unit's rows go. The copy loop only sees `Sink`, so another kind of target
(a search index such as Elasticsearch) is one more class, not a change to the loop."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Engine

from datatrace_tasks.sync.ddl import TargetTable, create_target
from datatrace_tasks.sync.engines import is_mysql


class Sink(Protocol):
    """The write side of one unit."""

    def prepare(self, *, fresh: bool) -> None:
        """Make the target ready; `fresh` is True only on the very first start of the unit."""
        ...

    def write_batch(self, rows: Sequence[Mapping[str, Any]], *, replay: bool = False) -> None:
        """Write one batch atomically and idempotently.

        `replay` marks the first batch after a resume, which may already have
        committed before its checkpoint was saved.
        """
        ...

    def finish(self) -> None:
        """Called once after the last batch."""
        ...


class SqlSink:
    """A MySQL/MariaDB, PostgreSQL or SQLite table; one transaction per batch."""

    def __init__(self, engine: Engine, spec: TargetTable, write_mode: str) -> None:
        self.engine = engine
        self.spec = spec
        self.write_mode = write_mode

    def prepare(self, *, fresh: bool) -> None:
        """Create the table if missing; empty it in truncate mode on the first start only."""
        create_target(self.engine, self.spec)
        if fresh and self.write_mode == "truncate":
            with self.engine.begin() as conn:
                conn.execute(sa.delete(self.spec.table))

    def write_batch(self, rows: Sequence[Mapping[str, Any]], *, replay: bool = False) -> None:
        """Upsert (upsert, truncate), insert (append) or insert-if-absent (append replay)."""
        if not rows:
            return
        converters, written = self.spec.converters, self.spec.table.c
        params = [
            {
                name: converters[name](v) if name in converters else v
                for name, v in row.items()
                if name in written  # not a generated column the target computes
            }
            for row in rows
        ]
        if self.write_mode == "append":
            stmt = self._insert(skip_existing=True) if replay else sa.insert(self.spec.table)
        else:
            stmt = self._upsert()
        with self.engine.begin() as conn:
            conn.execute(stmt, params)

    def finish(self) -> None:
        """Nothing to flush: every batch committed on its own."""

    def _upsert(self) -> Any:
        table, key = self.spec.table, self.spec.key
        others = [c.name for c in table.columns if c.name not in key]
        if is_mysql(self.engine):
            my = mysql.insert(table)
            # With only key columns there is nothing to update: a no-op assignment.
            update = {name: my.inserted[name] for name in (others or key[:1])}
            return my.on_duplicate_key_update(update)
        dialect_insert = postgresql.insert if self.engine.dialect.name == "postgresql" else None
        ins = (dialect_insert or sqlite.insert)(table)
        if not others:
            return ins.on_conflict_do_nothing(index_elements=list(key))
        return ins.on_conflict_do_update(
            index_elements=list(key), set_={name: ins.excluded[name] for name in others}
        )

    def _insert(self, *, skip_existing: bool) -> Any:
        table, key = self.spec.table, self.spec.key
        if not skip_existing:
            return sa.insert(table)
        if is_mysql(self.engine):
            my = mysql.insert(table)
            # Not INSERT IGNORE, which would also swallow bad values.
            return my.on_duplicate_key_update({key[0]: table.c[key[0]]})
        dialect_insert = postgresql.insert if self.engine.dialect.name == "postgresql" else None
        return (dialect_insert or sqlite.insert)(table).on_conflict_do_nothing(
            index_elements=list(key)
        )
