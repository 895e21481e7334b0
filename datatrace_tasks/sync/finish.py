"""What is built on the target once the rows are in: a table's secondary indexes and
its next AUTO_INCREMENT value after its unit's copy, the foreign keys after the
whole job (see `schema.py` for why after).

Each step looks at the target first and builds only what is missing, so a resumed
unit or a repeated run builds nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
    name = quote(target, table.target)
    if is_mysql(target) and table.name in objects.auto_increment:
        after = objects.auto_increment[table.name]
        _run(target, f"ALTER TABLE {plain_quote(target, table.target)} AUTO_INCREMENT = {after}")
        return f"AUTO_INCREMENT = {after}"
    if target.dialect.name != "postgresql":
        return None
    done = []
    for col in numbered:
        sequence = plain_quote(target, sequence_name(table.target, col.name))
        column = quote(target, col.name)
        with target.begin() as conn:
            if conn.exec_driver_sql("SELECT to_regclass(%s)", (sequence,)).scalar() is None:
                continue  # a table made by someone else, numbered its own way
            conn.exec_driver_sql(
                f"SELECT setval(%s::regclass, (COALESCE(MAX({column}), 0) + 1)::bigint, false)"  # noqa: S608
                f" FROM {name}",
                (sequence,),
            )
        done.append(f"sequence of {col.name} past its largest value")
    return "; ".join(done) or None


def finish_table(
    dbs: Databases, table: SourceTable, spec: TargetTable, objects: SchemaObjects
) -> Built:
    """Build the table's missing secondary indexes and set its numbering of new rows."""
    done = Built()
    statements, done.not_built = index_statements(dbs, table, objects)
    existing = _existing(dbs.target, spec.table.name, _MYSQL_INDEXES, "indexes")
    for name, sql in statements.items():
        if name not in existing:
            _run(dbs.target, sql)
            done.built.append(f"index {name}")
    counter = _set_counter(dbs, table, objects)
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


def _sqlite_note(count: int) -> list[str]:
    """SQLite's one line for all its foreign keys, which it cannot add to a table."""
    if not count:
        return []
    return [f"{count} foreign key(s) not added: SQLite cannot add one to an existing table"]


def planned_foreign_keys(
    target: Engine, tables: list[SourceTable], objects: SchemaObjects
) -> list[str]:
    """`plan`'s line for each foreign key of a copied table: added at the end, or why not."""
    by_name = {t.name: t for t in tables}
    if target.dialect.name == "sqlite":
        return _sqlite_note(sum(fk.table in by_name for fk in objects.foreign_keys))
    lines = []
    for fk in objects.foreign_keys:
        if fk.table in by_name:
            problem = _foreign_key_problem(fk, by_name, target)
            link = f"{fk.table}({', '.join(fk.columns)}) -> {fk.parent}"
            lines.append(problem or f"foreign key {fk.name} {link}: added once every table is in")
    return lines


def add_foreign_keys(job: Job) -> Built:
    """Add the source's foreign keys between the job's tables on the target, once every
    table is in; each that cannot be added is named with the reason (the target
    refused it: its rows break it, or the parent has no key on those columns)."""
    dbs = Databases(job.source_url, job.target_url)
    done = Built()
    try:
        tables = {t.name: t for t in job_tables(dbs.catalog(), job)}
        names = {name: t.target for name, t in tables.items()}
        keys = read_objects(dbs.source).foreign_keys
        if dbs.target.dialect.name == "sqlite":
            done.not_built = _sqlite_note(sum(fk.table in tables for fk in keys))
            return done
        for fk in keys:
            if fk.table not in tables:
                continue
            problem = _foreign_key_problem(fk, tables, dbs.target)
            if problem is not None:
                done.not_built.append(problem)
                continue
            there = _existing(dbs.target, names[fk.table], _MYSQL_FOREIGN_KEYS, "foreign keys")
            if fk.name in there:
                continue
            try:
                _run(dbs.target, foreign_key_sql(dbs.target, fk, names))
                done.built.append(f"foreign key {fk.name} ({fk.table} -> {fk.parent})")
            except DBAPIError as exc:
                reason = " ".join(str(exc.orig or exc).split())  # with PostgreSQL's DETAIL
                done.not_built.append(f"foreign key {fk.name!r} of {fk.table!r}: {reason}")
        return done
    finally:
        dbs.dispose()
