"""The schema objects around a table's rows: secondary indexes, foreign keys, the next
AUTO_INCREMENT value, and what is not copied (views, triggers, routines).

As pgloader does, secondary indexes are built once a table's rows are in (one sorted
build instead of one insert per row per index, and no unique check that a row still
on its way could trip), and foreign keys once every table of the job is in: tables
are copied in parallel and in any order, so a child's rows may land before its
parent's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from datatrace_tasks.sync.catalog import SourceTable
from datatrace_tasks.sync.engines import is_mysql
from datatrace_tasks.sync.rawsql import plain_quote


@dataclass(frozen=True)
class Index:
    """A source index other than the primary key."""

    name: str
    columns: tuple[str, ...]
    unique: bool
    method: str = "BTREE"  # or FULLTEXT, SPATIAL, HASH
    prefixed: bool = False  # a column is indexed by its first characters only


@dataclass(frozen=True)
class ForeignKey:
    """A foreign key of the source: `table(columns)` references `parent(parent_columns)`."""

    name: str
    table: str
    columns: tuple[str, ...]
    parent: str
    parent_columns: tuple[str, ...]
    on_delete: str = "RESTRICT"
    on_update: str = "RESTRICT"


@dataclass(frozen=True)
class SchemaObjects:
    """What the source schema holds besides its tables' rows."""

    indexes: dict[str, tuple[Index, ...]] = field(default_factory=dict)
    foreign_keys: tuple[ForeignKey, ...] = ()
    auto_increment: dict[str, int] = field(default_factory=dict)  # next value, by table
    views: tuple[str, ...] = ()
    triggers: tuple[str, ...] = ()
    routines: tuple[str, ...] = ()

    def not_copied(self) -> str | None:
        """`plan`'s line for the objects no run copies, or None when there are none."""
        parts = [
            f"{label} {', '.join(names)}"
            for label, names in (
                ("views", self.views),
                ("triggers", self.triggers),
                ("routines", self.routines),
            )
            if names
        ]
        return "not copied: " + "; ".join(parts) if parts else None


_STATISTICS = sa.text(
    "SELECT TABLE_NAME, INDEX_NAME, NON_UNIQUE, COLUMN_NAME, SUB_PART, INDEX_TYPE"
    " FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = :schema"
    " AND INDEX_NAME <> 'PRIMARY' ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX"
)
_FOREIGN_KEYS = sa.text(
    "SELECT k.CONSTRAINT_NAME, k.TABLE_NAME, k.COLUMN_NAME, k.REFERENCED_TABLE_NAME,"
    " k.REFERENCED_COLUMN_NAME, r.DELETE_RULE, r.UPDATE_RULE"
    " FROM information_schema.KEY_COLUMN_USAGE k"
    " JOIN information_schema.REFERENTIAL_CONSTRAINTS r"
    " ON r.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME"
    " AND r.TABLE_NAME = k.TABLE_NAME"
    " WHERE k.TABLE_SCHEMA = :schema AND k.REFERENCED_TABLE_SCHEMA = :schema"
    " ORDER BY k.TABLE_NAME, k.CONSTRAINT_NAME, k.ORDINAL_POSITION"
)
_NAMES = {
    "views": "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = :schema",
    "triggers": "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS"
    " WHERE TRIGGER_SCHEMA = :schema",
    "routines": "SELECT ROUTINE_NAME FROM information_schema.ROUTINES"
    " WHERE ROUTINE_SCHEMA = :schema",
}
_AUTO_INCREMENT = sa.text(
    "SELECT TABLE_NAME, AUTO_INCREMENT FROM information_schema.TABLES"
    " WHERE TABLE_SCHEMA = :schema AND AUTO_INCREMENT IS NOT NULL"
)


def _mysql_objects(conn: Connection, schema: str) -> SchemaObjects:
    params = {"schema": schema}
    found: dict[tuple[str, str], list[tuple[str, bool, bool, str]]] = {}
    for table, name, non_unique, column, sub_part, method in conn.execute(_STATISTICS, params):
        found.setdefault((str(table), str(name)), []).append(
            (str(column), not int(non_unique), sub_part is not None, str(method))
        )
    indexes: dict[str, list[Index]] = {}
    for (table, name), cols in found.items():
        index = Index(
            name,
            tuple(c[0] for c in cols),
            unique=cols[0][1],
            method=cols[0][3].upper(),
            prefixed=any(c[2] for c in cols),
        )
        indexes.setdefault(table, []).append(index)
    keys: dict[tuple[str, str], list[tuple[str, ...]]] = {}
    for row in conn.execute(_FOREIGN_KEYS, params):
        keys.setdefault((str(row[1]), str(row[0])), []).append(tuple(map(str, row)))
    foreign = tuple(
        ForeignKey(
            name=name,
            table=table,
            columns=tuple(r[2] for r in rows),
            parent=rows[0][3],
            parent_columns=tuple(r[4] for r in rows),
            on_delete=rows[0][5],
            on_update=rows[0][6],
        )
        for (table, name), rows in keys.items()
    )
    names = {
        kind: tuple(sorted(str(r[0]) for r in conn.execute(sa.text(sql), params)))
        for kind, sql in _NAMES.items()
    }
    counters = {str(t): int(n) for t, n in conn.execute(_AUTO_INCREMENT, params)}
    return SchemaObjects({t: tuple(i) for t, i in indexes.items()}, foreign, counters, **names)


def _generic_objects(conn: Connection) -> SchemaObjects:
    """A SQLite (or other non-MySQL) source's indexes, foreign keys and views."""
    inspector = sa.inspect(conn)
    indexes: dict[str, tuple[Index, ...]] = {}
    foreign: list[ForeignKey] = []
    for table in inspector.get_table_names():
        indexes[table] = tuple(
            Index(str(i["name"]), tuple(map(str, i["column_names"])), bool(i["unique"]))
            for i in inspector.get_indexes(table)
            if i["name"] and all(i["column_names"])
        )
        for n, fk in enumerate(inspector.get_foreign_keys(table)):
            foreign.append(
                ForeignKey(
                    name=str(fk.get("name") or f"{table}_fk{n + 1}"),
                    table=table,
                    columns=tuple(fk["constrained_columns"]),
                    parent=str(fk["referred_table"]),
                    parent_columns=tuple(fk["referred_columns"]),
                    on_delete=str((fk.get("options") or {}).get("ondelete") or "NO ACTION"),
                    on_update=str((fk.get("options") or {}).get("onupdate") or "NO ACTION"),
                )
            )
    views = tuple(sorted(inspector.get_view_names()))
    return SchemaObjects(indexes, tuple(foreign), views=views)


def read_objects(engine: Engine) -> SchemaObjects:
    """The source schema's indexes, foreign keys, counters, views, triggers, routines."""
    with engine.connect() as conn:
        if is_mysql(engine):
            return _mysql_objects(conn, str(engine.url.database))
        return _generic_objects(conn)


def index_name(table: str, index: str) -> str:
    """The index's name on PostgreSQL or SQLite, where index names are the schema's, not
    the table's (Sakila has `idx_fk_film_id` on two tables): `table_index`, cut to
    PostgreSQL's 63 bytes with a hash of the whole when longer."""
    name = f"{table}_{index}"
    if len(name.encode()) <= 63:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return name.encode()[:54].decode(errors="ignore") + "_" + digest


def secondary(table: SourceTable, objects: SchemaObjects) -> list[Index]:
    """The table's indexes to build after its rows: all but the one its key is (the
    target's primary key, or the unique key kept from the start for upserts) and those
    over a column the job leaves out."""
    copied = {col.name for col in table.columns}
    return [
        index
        for index in objects.indexes.get(table.name, ())
        if set(index.columns) <= copied and not (index.unique and index.columns == table.key)
    ]


def portable_refusal(index: Index, dialect: str) -> str | None:
    """Why an index cannot be built on PostgreSQL or SQLite, or None when it can."""
    if index.method in ("FULLTEXT", "SPATIAL"):
        return f"{index.method} index {index.name!r} not built: {dialect} has no such index"
    if index.unique and index.prefixed:
        return (
            f"unique index {index.name!r} over a column prefix not built: {dialect} can"
            " only keep whole values unique"
        )
    return None


def foreign_key_sql(target: Engine, fk: ForeignKey, names: dict[str, str]) -> str:
    """`ALTER TABLE ... ADD CONSTRAINT ... FOREIGN KEY ...`, with the target table names
    `names` gives for the source ones; sent without parameters."""

    def q(name: str) -> str:
        return plain_quote(target, name)

    def cols(columns: tuple[str, ...]) -> str:
        return ", ".join(map(q, columns))

    rules = ""
    for event, rule in (("DELETE", fk.on_delete), ("UPDATE", fk.on_update)):
        if rule.upper() in ("CASCADE", "SET NULL", "SET DEFAULT", "RESTRICT", "NO ACTION"):
            rules += f" ON {event} {rule.upper()}"
    return (
        f"ALTER TABLE {q(names[fk.table])} ADD CONSTRAINT {q(fk.name)}"
        f" FOREIGN KEY ({cols(fk.columns)}) REFERENCES {q(names[fk.parent])}"
        f" ({cols(fk.parent_columns)}){rules}"
    )


def declare_foreign_keys(table: sa.Table, links: Sequence[ForeignKey]) -> None:
    """Declare foreign keys in a SQLite table's CREATE (SQLite cannot add one later and
    checks them only with PRAGMA foreign_keys on, so they do not hinder the copy)."""
    for fk in links:
        parent: sa.Table = table
        if fk.parent != table.name:
            # Only its name and columns are rendered: a stand-in will do.
            known = table.metadata.tables.get(fk.parent)
            parent = known if known is not None else sa.Table(fk.parent, table.metadata)
            for name in fk.parent_columns:
                if name not in parent.c:
                    parent.append_column(sa.Column(name, sa.types.NullType()))
        table.append_constraint(
            sa.ForeignKeyConstraint(
                [table.c[name] for name in fk.columns],
                [parent.c[name] for name in fk.parent_columns],
                name=fk.name,
                ondelete=fk.on_delete,
                onupdate=fk.on_update,
            )
        )
