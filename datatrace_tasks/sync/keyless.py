"""Tables without a key: copied whole into a staging table, swapped in at the end.

Without a key there is no stable order to resume from and no way to tell a copied
row from a new one, so such a table is copied as one piece: every row into a fresh
staging table next to the target, then the staging table replaces the target in one
step (the target never shows half a table). A resume starts it again from zero, and
`plan` says so. Verification compares the tables as multisets, so duplicate rows
must arrive as often as they are in the source. Append mode is refused: a restarted
copy could not know which rows it had already appended.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from datatrace_tasks.exceptions import TableUnsupported
from datatrace_tasks.state.reporter import ProgressReporter
from datatrace_tasks.state.units import TaskUnit
from datatrace_tasks.sync.catalog import SourceTable
from datatrace_tasks.sync.ddl import TargetTable, create_target, target_table
from datatrace_tasks.sync.engines import Databases, is_mysql
from datatrace_tasks.sync.finish import sqlite_links
from datatrace_tasks.sync.job import Job
from datatrace_tasks.sync.rawsql import plain_quote
from datatrace_tasks.sync.reader import projection

KEYLESS_NOTE = (
    "no key that orders pages exactly (a primary key, or a unique key over NOT NULL"
    " columns, with no BIT, FLOAT, SET or TIME column): copied whole into a staging"
    " table and swapped in at the end; a resume restarts it from zero; verified as a"
    " multiset of rows"
)


def refusal_keyless_append(table: SourceTable) -> str:
    """Why a table without a key cannot be appended."""
    return (
        f"table {table.name!r} has no primary key and no unique key over NOT NULL columns"
        " that orders pages exactly (none with BIT, FLOAT, SET or TIME columns), and"
        " write_mode is append: a restarted copy could not tell the rows it already"
        " appended; use write_mode upsert or truncate (the table is then replaced whole)"
    )


def _side_name(name: str, role: str) -> str:
    return f"datatrace_{role}_{hashlib.sha256(name.encode()).hexdigest()[:16]}"


def _execute(engine: Engine, *statements: str) -> None:
    with engine.begin() as conn:
        for sql in statements:
            conn.exec_driver_sql(sql, execution_options={"no_parameters": True})


def _fresh_stage(target: Engine, spec: TargetTable, stage: str) -> sa.Table:
    """An empty staging table shaped like the target table."""
    _execute(target, f"DROP TABLE IF EXISTS {plain_quote(target, stage)}")
    if is_mysql(target):
        name = plain_quote(target, spec.table.name)
        _execute(target, f"CREATE TABLE {plain_quote(target, stage)} LIKE {name}")
        return spec.table.to_metadata(sa.MetaData(), name=stage)
    staged = spec.table.to_metadata(spec.table.metadata, name=stage)  # its foreign keys resolve
    with target.begin() as conn:
        staged.create(conn)
    return staged


def _swap(target: Engine, table: str, stage: str) -> None:
    """Replace `table` by `stage` in one step."""
    q = plain_quote
    if is_mysql(target):
        old = _side_name(table, "old")
        _execute(
            target,
            f"RENAME TABLE {q(target, table)} TO {q(target, old)},"
            f" {q(target, stage)} TO {q(target, table)}",
            f"DROP TABLE {q(target, old)}",
        )
        return
    statements = [
        f"DROP TABLE {q(target, table)}",
        f"ALTER TABLE {q(target, stage)} RENAME TO {q(target, table)}",
    ]
    if target.dialect.name != "sqlite":
        _execute(target, *statements)  # PostgreSQL: DDL is transactional
        return
    raw: Any = target.raw_connection()  # pysqlite opens no transaction before DDL itself
    try:
        driver = raw.driver_connection
        level = driver.isolation_level
        driver.isolation_level = None
        try:
            driver.execute("BEGIN IMMEDIATE")
            for sql in statements:
                driver.execute(sql)
            driver.execute("COMMIT")
        except BaseException:
            driver.execute("ROLLBACK")
            raise
        finally:
            driver.isolation_level = level
    finally:
        raw.close()


def copy_keyless(
    dbs: Databases, job: Job, table: SourceTable, unit: TaskUnit, reporter: ProgressReporter
) -> TargetTable:
    """Copy a table without a key through a staging table; returns the target table.

    Raises:
        TableUnsupported: write_mode is append.
        UnitPaused: a pause was requested; the next run starts from zero.
    """
    if job.write_mode == "append":
        raise TableUnsupported(refusal_keyless_append(table))
    links = sqlite_links(dbs, job, table)
    with dbs.source.connect() as conn:
        spec = target_table(conn, dbs.target, table, write_mode=job.write_mode, links=links)
    create_target(dbs.target, spec)
    stage = _fresh_stage(dbs.target, spec, _side_name(spec.table.name, "stage"))
    started = time.perf_counter()
    source = table.source_rows()
    select = sa.select(*projection(table, source, dbs.target.dialect.name))
    names = [c.name for c in table.columns]
    convert = spec.converters
    insert = sa.insert(stage)
    done = 0
    with dbs.source.connect() as conn:
        count = sa.select(sa.func.count()).select_from(source)
        reporter.set_total(int(conn.execute(count).scalar_one()))
        streamed = conn.execution_options(stream_results=True, yield_per=job.batch_size)
        result = streamed.execute(select)
        try:
            for part in result.partitions():
                rows = [
                    {
                        n: convert[n](v) if n in convert else v
                        for n, v in zip(names, r, strict=True)
                        if n in stage.c  # not a generated column the target computes
                    }
                    for r in part
                ]
                with dbs.target.begin() as target:
                    target.execute(insert, rows)
                done += len(rows)
                reporter.report(done, {"keyless": True, "rows": done})
        except BaseException:
            conn.invalidate()  # drop the half-read stream instead of reading it to the end
            raise
    _swap(dbs.target, spec.table.name, stage.name)
    unit.extra["copy"] = {
        "rows_read": done,
        "batches": -(-done // job.batch_size),
        "ranges": 1,
        "path": "keyless: staged and swapped",
        "resumed_after": None,
        "copy_seconds": round(time.perf_counter() - started, 3),
    }
    spec.ddl = None  # the table exists now
    return spec
