"""What is built on the target once the rows are in: a table's secondary indexes and
its next AUTO_INCREMENT value after its unit's copy, the foreign keys after the
whole job (see `schema.py` for why after).

Each step looks at the target first and builds only what is missing, so a resumed
unit or a repeated run builds nothing twice.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from datatrace_tasks.sync.catalog import SourceTable
from datatrace_tasks.sync.ddl import TargetTable, mysql_index_lines
from datatrace_tasks.sync.engines import Databases, is_mysql
from datatrace_tasks.sync.job import Job
from datatrace_tasks.sync.rawsql import plain_quote, quote
from datatrace_tasks.sync.schema import (
    ForeignKey,
    SchemaObjects,
    foreign_key_sql,
    index_name,
    portable_refusal,
    read_objects,
    secondary,
)
from datatrace_tasks.sync.tablesettings import job_tables
from datatrace_tasks.sync.typemap import sequence_name


@dataclass
class Built:
    """What a finishing step built, and what it did not, each with the reason."""

    built: list[str] = field(default_factory=list)
    not_built: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, list[str]]:
        """As kept in the unit's `extra["schema"]`."""
        return {"built": self.built, "not_built": self.not_built}


def _run(target: Engine, sql: str) -> None:
    with target.begin() as conn:
        conn.exec_driver_sql(sql, execution_options={"no_parameters": True})


def _reason(exc: DBAPIError) -> str:
    """The server's message on one line (PostgreSQL's DETAIL included)."""
    return " ".join(str(exc.orig or exc).split())


_MYSQL_INDEXES = sa.text(
    "SELECT INDEX_NAME FROM information_schema.STATISTICS"
    " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :table"
)
_MYSQL_FOREIGN_KEYS = sa.text(
    "SELECT CONSTRAINT_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS"
    " WHERE CONSTRAINT_SCHEMA = DATABASE() AND TABLE_NAME = :table"
)


def _existing(target: Engine, table: str, mysql_sql: sa.TextClause, kind: str) -> set[str]:
    """The names of the table's indexes or foreign keys (`kind`) on the target. MySQL
    is asked directly: reflection warns on types it does not know (INET6, UUID)."""
    with target.connect() as conn:
        if is_mysql(target):
            return {str(name) for (name,) in conn.execute(mysql_sql, {"table": table})}
        inspector = sa.inspect(conn)
        if not inspector.has_table(table):
            return set()  # not copied yet
        if kind == "foreign keys":
            return {str(k.get("name")) for k in inspector.get_foreign_keys(table)}
        names = {str(i["name"]) for i in inspector.get_indexes(table)}
        return names | {str(u["name"]) for u in inspector.get_unique_constraints(table)}


def index_statements(
    dbs: Databases, table: SourceTable, objects: SchemaObjects
) -> tuple[dict[str, str], list[str]]:
    """The statements that build the table's secondary indexes on the target, by index
    name there, and the indexes the target cannot have, with the reason."""
    target, into = dbs.target, plain_quote(dbs.target, table.target)
    if is_mysql(target) and is_mysql(dbs.source):  # the source's own definitions
        with dbs.source.connect() as conn:
            lines = mysql_index_lines(conn, table)
        return {name: f"ALTER TABLE {into} ADD {line}" for name, line in lines.items()}, []
    statements, refused = {}, []
    for index in secondary(table, objects):
        why = portable_refusal(index, target.dialect.name)
        if why is not None:
            refused.append(why)
            continue
        name = index_name(table.target, index.name)
        columns = ", ".join(plain_quote(target, c) for c in index.columns)
        unique = "UNIQUE " if index.unique else ""
        statements[name] = f"CREATE {unique}INDEX {plain_quote(target, name)} ON {into} ({columns})"
    return statements, refused


def _set_counter(dbs: Databases, table: SourceTable, objects: SchemaObjects) -> str | None:
    """Move the target's numbering of new rows past the copied rows: the source's own
    next AUTO_INCREMENT on MySQL, the identity's sequence on PostgreSQL (SQLite's
    INTEGER primary key numbers from the largest row by itself)."""
    target = dbs.target
    numbered = [col for col in table.columns if col.auto_increment]
    if not numbered:
        return None
    if is_mysql(target) and table.name in objects.auto_increment:
        after = objects.auto_increment[table.name]
        _run(target, f"ALTER TABLE {plain_quote(target, table.target)} AUTO_INCREMENT = {after}")
        return f"AUTO_INCREMENT = {after}"
    if target.dialect.name == "postgresql":
        return _set_sequences(target, table, numbered)
    return None


def _set_sequences(target: Engine, table: SourceTable, numbered: list[Any]) -> str | None:
    """Each numbered column's sequence past its largest value (1 when none is above 0)."""
    name = quote(target, table.target)
    done = []
    for col in numbered:
        sequence = plain_quote(target, sequence_name(table.target, col.name))
        column = quote(target, col.name)
        with target.begin() as conn:
            if conn.exec_driver_sql("SELECT to_regclass(%s)", (sequence,)).scalar() is None:
                continue  # a table made by someone else, numbered its own way
            largest = f"GREATEST(COALESCE(MAX({column}), 0), 0)"
            sql = f"SELECT setval(%s::regclass, ({largest} + 1)::bigint, false) FROM {name}"  # noqa: S608
            conn.exec_driver_sql(sql, (sequence,))
        done.append(f"sequence of {col.name} past its largest value")
    return "; ".join(done) or None


def finish_table(
    dbs: Databases, table: SourceTable, spec: TargetTable, objects: SchemaObjects
) -> Built:
    """Build the table's missing secondary indexes and set its numbering of new rows."""
    done = Built()
    statements, done.not_built = index_statements(dbs, table, objects)
    existing = _existing(dbs.target, spec.table.name, _MYSQL_INDEXES, "indexes")
    # The rows are in and verified: what the target refuses here is named, not fatal.
    for name, sql in statements.items():
        if name not in existing:
            try:
                _run(dbs.target, sql)
                done.built.append(f"index {name}")
            except DBAPIError as exc:
                done.not_built.append(f"index {name!r} not built: {_reason(exc)}")
    try:
        counter = _set_counter(dbs, table, objects)
    except DBAPIError as exc:
        done.not_built.append(f"numbering of new rows not set: {_reason(exc)}")
    else:
        if counter is not None:
            done.built.append(counter)
    return done


def _foreign_key_problem(
    fk: ForeignKey, tables: dict[str, SourceTable], target: Engine
) -> str | None:
    """Why this foreign key is not added on the target, or None."""
    where = f"foreign key {fk.name!r} of {fk.table!r}"
    if fk.parent not in tables:
        return f"{where} not added: the job does not copy {fk.parent!r}"
    for name, cols in ((fk.table, fk.columns), (fk.parent, fk.parent_columns)):
        copied = {col.name for col in tables[name].columns}
        if not set(cols) <= copied:
            return f"{where} not added: the job leaves out a column of {name!r}"
    return None


def planned_foreign_keys(
    target: Engine, tables: list[SourceTable], objects: SchemaObjects
) -> list[str]:
    """`plan`'s line for each foreign key of a copied table: added at the end, or why not."""
    by_name = {t.name: t for t in tables}
    when = (
        "declared with its table"
        if target.dialect.name == "sqlite"
        else "added once every table is in"
    )
    lines = []
    for fk in objects.foreign_keys:
        if fk.table in by_name:
            problem = _foreign_key_problem(fk, by_name, target)
            link = f"{fk.table}({', '.join(fk.columns)}) -> {fk.parent}"
            lines.append(problem or f"foreign key {fk.name} {link}: {when}")
    return lines


def sqlite_links(dbs: Databases, job: Job, table: SourceTable) -> list[ForeignKey]:
    """For a SQLite target, the table's foreign keys to declare in its CREATE, under
    target names: those to a parent the job copies, over columns it copies."""
    if dbs.target.dialect.name != "sqlite":
        return []
    tables = {t.name: t for t in job_tables(dbs.catalog(), job)}
    objects = dbs.once("schema objects", lambda: read_objects(dbs.source))
    return [
        dataclasses.replace(fk, table=table.target, parent=tables[fk.parent].target)
        for fk in objects.foreign_keys
        if fk.table == table.name and _foreign_key_problem(fk, tables, dbs.target) is None
    ]


def _sqlite_declared(dbs: Databases, job: Job) -> Built:
    """What SQLite holds of the job's foreign keys: declared with each table it created."""
    done = Built()
    tables, keys = _job_keys(dbs, job)
    for fk in keys:
        problem = _foreign_key_problem(fk, tables, dbs.target)
        if problem is not None:
            done.not_built.append(problem)
            continue
        child, parent = tables[fk.table].target, tables[fk.parent].target
        with dbs.target.connect() as conn:
            there = {
                (tuple(k["constrained_columns"]), k["referred_table"])
                for k in sa.inspect(conn).get_foreign_keys(child)
            }
        if (fk.columns, parent) in there:
            done.built.append(f"foreign key {fk.name} ({fk.table} -> {fk.parent}), declared")
        else:
            done.not_built.append(
                f"foreign key {fk.name!r} of {fk.table!r} not added: the SQLite table existed"
                " before without it, and SQLite cannot add one to an existing table"
            )
    return done


def _stored_name(target: Engine, name: str) -> str:
    """A constraint name as the target keeps it (PostgreSQL cuts it to 63 bytes)."""
    if target.dialect.name == "postgresql":
        return name.encode()[:63].decode(errors="ignore")
    return name


def _add(target: Engine, sql: str) -> None:
    """Add one foreign key, checking the rows against it: MySQL sessions of the copy run
    with the checks off (tables land in any order), this one turns them back on."""
    with target.begin() as conn:
        if is_mysql(target):
            conn.exec_driver_sql("SET SESSION foreign_key_checks = 1")
        conn.exec_driver_sql(sql, execution_options={"no_parameters": True})
        if is_mysql(target):
            conn.exec_driver_sql("SET SESSION foreign_key_checks = 0")


def _job_keys(dbs: Databases, job: Job) -> tuple[dict[str, SourceTable], list[ForeignKey]]:
    """The job's tables and the source's foreign keys whose child the job copies."""
    tables = {t.name: t for t in job_tables(dbs.catalog(), job)}
    keys = [fk for fk in read_objects(dbs.source).foreign_keys if fk.table in tables]
    return tables, keys


def drop_foreign_keys(job: Job) -> int:
    """Drop, on a PostgreSQL target, the foreign keys between the job's tables that an
    earlier run added, before this run writes (PostgreSQL always checks them, and
    units land in any order, truncate and re-syncs delete parent rows); the run adds
    them again once every unit is in. Returns how many were dropped."""
    dbs = Databases(job.source_url, job.target_url)
    try:
        if dbs.target.dialect.name != "postgresql":
            return 0
        tables, keys = _job_keys(dbs, job)
        dropped = 0
        for fk in keys:
            child = tables[fk.table].target
            name = _stored_name(dbs.target, fk.name)
            if name in _existing(dbs.target, child, _MYSQL_FOREIGN_KEYS, "foreign keys"):
                q = plain_quote
                _run(
                    dbs.target,
                    f"ALTER TABLE {q(dbs.target, child)} DROP CONSTRAINT {q(dbs.target, name)}",
                )
                dropped += 1
        return dropped
    finally:
        dbs.dispose()


def add_foreign_keys(job: Job) -> Built:
    """Add the source's foreign keys between the job's tables on the target, once every
    table is in; each that cannot be added is named with the reason (the target
    refused it: its rows break it, or the parent has no key on those columns)."""
    dbs = Databases(job.source_url, job.target_url)
    done = Built()
    try:
        if dbs.target.dialect.name == "sqlite":
            return _sqlite_declared(dbs, job)
        tables, keys = _job_keys(dbs, job)
        names = {name: t.target for name, t in tables.items()}
        for fk in keys:
            problem = _foreign_key_problem(fk, tables, dbs.target)
            if problem is not None:
                done.not_built.append(problem)
                continue
            there = _existing(dbs.target, names[fk.table], _MYSQL_FOREIGN_KEYS, "foreign keys")
            if _stored_name(dbs.target, fk.name) in there:
                continue
            try:
                _add(dbs.target, foreign_key_sql(dbs.target, fk, names))
                done.built.append(f"foreign key {fk.name} ({fk.table} -> {fk.parent})")
            except DBAPIError as exc:
                done.not_built.append(f"foreign key {fk.name!r} of {fk.table!r}: {_reason(exc)}")
        return done
    finally:
        dbs.dispose()
