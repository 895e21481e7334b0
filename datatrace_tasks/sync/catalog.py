"""The source catalog: which tables a MySQL schema has, their columns and their keys.

Read from `information_schema` rather than SQLAlchemy reflection because reflection
does not know GEOMETRY and turns SET values into Python sets; the catalog keeps the
exact MySQL type text (`COLUMN_TYPE`), which the type mapping and the checks need.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql import sqltypes
from sqlalchemy.types import TypeEngine

from datatrace_tasks.exceptions import ConfigError, TableNotFound

GEOMETRY_TYPES = frozenset(
    {
        "geometry",
        "point",
        "linestring",
        "polygon",
        "multipoint",
        "multilinestring",
        "multipolygon",
        "geometrycollection",
    }
)
INTEGER_BYTES = {"tinyint": 1, "smallint": 2, "mediumint": 3, "int": 4, "integer": 4, "bigint": 8}
_KINDS = {
    "decimal": "decimal",
    "numeric": "decimal",
    "float": "float",
    "double": "float",
    "real": "float",
    "char": "string",
    "varchar": "string",
    "tinytext": "string",
    "text": "string",
    "mediumtext": "string",
    "longtext": "string",
    "json": "string",
    "enum": "enum",
    "set": "set",
    "binary": "binary",
    "varbinary": "binary",
    "tinyblob": "binary",
    "blob": "binary",
    "mediumblob": "binary",
    "longblob": "binary",
    "date": "date",
    "datetime": "datetime",
    "timestamp": "datetime",
    "time": "time",
    "year": "year",
    "bit": "bit",
}


@dataclass(frozen=True)
class SourceColumn:
    """One column as MySQL describes it."""

    name: str
    data_type: str
    column_type: str
    nullable: bool
    char_length: int | None = None
    precision: int | None = None
    scale: int | None = None
    default: str | None = None  # MySQL's COLUMN_DEFAULT: SQL text ('abc', 0, NULL, now())
    extra: str = ""  # MySQL's EXTRA: auto_increment, on update ..., VIRTUAL GENERATED
    comment: str = ""
    # Set for non-MySQL sources only: the reflected type, used where the driver
    # returns raw text that the type turns into a value (SQLite dates).
    sa_type: TypeEngine[Any] | None = field(default=None, compare=False)

    @property
    def auto_increment(self) -> bool:
        """Whether the server numbers new rows in this column."""
        return "auto_increment" in self.extra.lower()

    @property
    def generated(self) -> bool:
        """Whether the server computes the column from others (VIRTUAL or STORED)."""
        # Not MySQL 8's DEFAULT_GENERATED, which marks an expression default.
        extra = self.extra.upper()
        return any(f"{how} GENERATED" in extra for how in ("VIRTUAL", "STORED", "PERSISTENT"))

    @property
    def unsigned(self) -> bool:
        """True for an unsigned numeric column."""
        return "unsigned" in self.column_type.lower()

    @property
    def single_float(self) -> bool:
        """A MySQL FLOAT, which the server writes as text with 6 digits only: it is read as
        `v + 0e0` (a DOUBLE holds every FLOAT exactly), on the source and a MySQL target."""
        return self.data_type == "float"

    @property
    def kind(self) -> str:
        """A portable family: integer, decimal, float, string, enum, set, binary, date,
        datetime, time, year, bit, geometry or other."""
        if self.data_type in INTEGER_BYTES:
            return "integer"
        if self.data_type in GEOMETRY_TYPES:
            return "geometry"
        return _KINDS.get(self.data_type, "other")


@dataclass(frozen=True)
class SourceTable:
    """One base table: its columns in order and the key that orders a keyset scan."""

    name: str
    columns: tuple[SourceColumn, ...]
    key: tuple[str, ...]
    key_origin: str  # "primary key", "unique key <name>" or "" when there is none
    estimated_rows: int = 0
    warnings: tuple[str, ...] = field(default=())
    # From the job's table_settings: the rows to copy (an SQL condition) and where to.
    row_filter: str | None = None
    target_name: str | None = None

    @property
    def target(self) -> str:
        """The name of the table on the target."""
        return self.target_name or self.name

    def column(self, name: str) -> SourceColumn:
        """The column called `name`."""
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    def sa_table(
        self,
        metadata: sa.MetaData | None = None,
        *,
        name: str | None = None,
        writable: bool = False,
    ) -> sa.Table:
        """A SQLAlchemy Table with pass-through types, for dialect-quoted statements;
        `writable`: without the generated columns, which a MySQL target computes itself."""
        columns = [c for c in self.columns if not (writable and c.generated)]
        return sa.Table(
            name or self.name,
            metadata or sa.MetaData(),
            *(sa.Column(col.name, col.sa_type or sa.types.NullType()) for col in columns),
        )

    def source_rows(self) -> sa.Table | sa.Subquery:
        """What the source reads select from: the table, or, with a row filter, the rows
        that match it (a derived table under the table's name, which MySQL, PostgreSQL
        and SQLite merge into the outer query, so the key's index still serves)."""
        table = self.sa_table()
        if self.row_filter is None:
            return table
        # No bind parameters; the newline ends a `-- comment` the condition may close with.
        condition = sa.text(self.row_filter.replace(":", "\\:") + "\n")
        return sa.select(table).where(condition).subquery(self.name)


_COLUMNS = sa.text(
    "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE,"
    " CHARACTER_MAXIMUM_LENGTH, NUMERIC_PRECISION, NUMERIC_SCALE,"
    " COLUMN_DEFAULT, EXTRA, COLUMN_COMMENT"
    " FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = :schema"
    " ORDER BY TABLE_NAME, ORDINAL_POSITION"
)
_TABLES = sa.text(
    "SELECT TABLE_NAME, TABLE_ROWS FROM information_schema.TABLES"
    " WHERE TABLE_SCHEMA = :schema AND TABLE_TYPE = 'BASE TABLE'"
)
_INDEXES = sa.text(
    "SELECT TABLE_NAME, INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS"
    " WHERE TABLE_SCHEMA = :schema AND NON_UNIQUE = 0"
    " ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX"
)


# Kinds whose values do not page exactly in a keyset scan: the key read back (BIT as
# bytes, FLOAT as its rounded text, SET and TIME as text and intervals) does not compare
# on the server as the stored value does, and pages skipped rows (the key-type test
# found it). A table keyed only by them is copied as a table without a key.
UNPAGEABLE_KINDS = frozenset({"bit", "float", "set", "time"})


def _pageable(columns: dict[str, SourceColumn], cols: list[str]) -> bool:
    return all(c in columns and columns[c].kind not in UNPAGEABLE_KINDS for c in cols)


def _choose_key(
    columns: dict[str, SourceColumn], indexes: dict[str, list[str]]
) -> tuple[tuple[str, ...], str]:
    if "PRIMARY" in indexes and _pageable(columns, indexes["PRIMARY"]):
        return tuple(indexes["PRIMARY"]), "primary key"
    # A unique key orders rows only if none of its columns can be NULL.
    candidates = [
        (len(cols), name, cols)
        for name, cols in indexes.items()
        if name != "PRIMARY"
        and _pageable(columns, cols)
        and all(c in columns and not columns[c].nullable for c in cols)
    ]
    if not candidates:
        return (), ""
    _, name, cols = min(candidates)
    return tuple(cols), f"unique key {name}"


def read_mysql_catalog(conn: Connection, schema: str) -> dict[str, SourceTable]:
    """Every base table of `schema` (views are left out), by name."""
    params = {"schema": schema}
    estimates = {str(name): int(rows or 0) for name, rows in conn.execute(_TABLES, params).all()}
    columns: dict[str, dict[str, SourceColumn]] = {name: {} for name in estimates}
    for row in conn.execute(_COLUMNS, params).all():
        table = str(row[0])
        if table not in columns:
            continue
        columns[table][str(row[1])] = SourceColumn(
            name=str(row[1]),
            data_type=str(row[2]).lower(),
            column_type=str(row[3]),
            nullable=row[4] == "YES",
            char_length=None if row[5] is None else int(row[5]),
            precision=None if row[6] is None else int(row[6]),
            scale=None if row[7] is None else int(row[7]),
            default=None if row[8] is None else str(row[8]),
            extra=str(row[9] or ""),
            comment=str(row[10] or ""),
        )
    indexes: dict[str, dict[str, list[str]]] = {name: {} for name in estimates}
    for table, index, column in conn.execute(_INDEXES, params).all():
        if table in indexes:
            indexes[table].setdefault(str(index), []).append(str(column))
    catalog = {}
    for name in sorted(estimates):
        key, origin = _choose_key(columns[name], indexes[name])
        catalog[name] = SourceTable(
            name=name,
            columns=tuple(columns[name].values()),
            key=key,
            key_origin=origin,
            estimated_rows=estimates[name],
        )
    return catalog


def read_catalog(engine: Engine) -> dict[str, SourceTable]:
    """The source catalog; for MySQL the URL's database is the schema.

    Other sources (SQLite, PostgreSQL) are read through SQLAlchemy reflection, in
    their default schema, with types reduced to the MySQL families used here.

    Raises:
        ConfigError: a MySQL URL that names no database.
    """
    if engine.dialect.name not in ("mysql", "mariadb"):
        with engine.connect() as conn:
            return read_generic_catalog(conn)
    schema = engine.url.database
    if not schema:
        raise ConfigError("the source URL must name a database (the schema to copy)")
    with engine.connect() as conn:
        return read_mysql_catalog(conn, schema)


def resolve_tables(
    catalog: dict[str, SourceTable],
    tables: Sequence[str],
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
) -> list[SourceTable]:
    """The tables a job asks for, in catalog order.

    `tables` is `["*"]` or exact names (a name is only ever looked up, never pasted
    into SQL); `include`/`exclude` are case-sensitive fnmatch patterns applied after.

    Raises:
        TableNotFound: a named table is not in the source schema.
    """
    if list(tables) == ["*"] or "*" in tables:
        chosen = list(catalog)
    else:
        unknown = [name for name in tables if name not in catalog]
        if unknown:
            hints = difflib.get_close_matches(unknown[0], list(catalog), n=3)
            hint = f" (did you mean {', '.join(map(repr, hints))}?)" if hints else ""
            names = ", ".join(repr(name) for name in unknown)
            raise TableNotFound(f"table(s) not in the source schema: {names}{hint}")
        chosen = [name for name in catalog if name in set(tables)]
    if include:
        chosen = [n for n in chosen if any(fnmatch.fnmatchcase(n, p) for p in include)]
    if exclude:
        chosen = [n for n in chosen if not any(fnmatch.fnmatchcase(n, p) for p in exclude)]
    return [catalog[name] for name in chosen]


def _generic_column(name: str, t: TypeEngine[Any], nullable: bool, sqlite: bool) -> SourceColumn:
    length = getattr(t, "length", None)
    data_type, keep = "other", False
    if isinstance(t, sqltypes.Boolean):
        data_type = "tinyint"
    elif isinstance(t, sqltypes.Integer):
        if sqlite or isinstance(t, sqltypes.BigInteger):
            data_type = "bigint"
        else:
            data_type = "smallint" if isinstance(t, sqltypes.SmallInteger) else "int"
    elif isinstance(t, sqltypes.Float):
        data_type = "double"
    elif isinstance(t, sqltypes.Numeric):
        data_type = "decimal"
    elif isinstance(t, sqltypes.String):
        data_type = "varchar" if length else "text"
    elif isinstance(t, sqltypes._Binary):
        data_type = "blob"
    elif isinstance(t, sqltypes.DateTime | sqltypes.Date | sqltypes.Time):
        data_type = type(t).__visit_name__.lower()
        data_type = {"timestamp": "datetime"}.get(data_type, data_type)
        keep = True
    return SourceColumn(
        name=name,
        data_type=data_type if data_type in _KINDS or data_type in INTEGER_BYTES else "other",
        column_type=str(t).lower(),
        nullable=nullable,
        char_length=length,
        precision=getattr(t, "precision", None) if data_type == "decimal" else None,
        scale=getattr(t, "scale", None) if data_type == "decimal" else None,
        sa_type=t if keep else None,
    )


def read_generic_catalog(conn: Connection) -> dict[str, SourceTable]:
    """Every table of a non-MySQL source's default schema, through reflection."""
    inspector = sa.inspect(conn)
    sqlite = conn.dialect.name == "sqlite"
    catalog = {}
    for name in sorted(inspector.get_table_names()):
        columns = {
            c["name"]: _generic_column(c["name"], c["type"], bool(c["nullable"]), sqlite)
            for c in inspector.get_columns(name)
        }
        indexes: dict[str, list[str]] = {}
        primary = inspector.get_pk_constraint(name).get("constrained_columns") or []
        if primary:
            indexes["PRIMARY"] = list(primary)
        for unique in inspector.get_unique_constraints(name):
            indexes[str(unique["name"])] = list(unique["column_names"])
        for index in inspector.get_indexes(name):
            if index["unique"]:
                indexes[str(index["name"])] = [str(c) for c in index["column_names"]]
        key, origin = _choose_key(columns, indexes)
        catalog[name] = SourceTable(name, tuple(columns.values()), key, origin)
    return catalog
