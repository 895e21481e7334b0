"""The target table of a unit: the DDL that would create it, or why an existing one cannot
take the source rows. Checked before any row is written."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.schema import CreateTable
from sqlalchemy.sql import sqltypes
from sqlalchemy.types import TypeEngine

from datatrace_tasks.exceptions import SchemaIncompatible, TableUnsupported
from datatrace_tasks.sync.catalog import (
    INTEGER_BYTES,
    SourceColumn,
    SourceTable,
    read_mysql_catalog,
)
from datatrace_tasks.sync.engines import is_mysql
from datatrace_tasks.sync.rawsql import plain_quote, quote
from datatrace_tasks.sync.schema import ForeignKey, declare_foreign_keys
from datatrace_tasks.sync.typemap import Convert, decimal_digits, integer_range, portable_table

# A foreign-key line of SHOW CREATE TABLE output: "  CONSTRAINT `fk` FOREIGN KEY (...) ...".
_FK_LINE = re.compile(r"^\s*CONSTRAINT\s+`(?:[^`]|``)*`\s+FOREIGN\s+KEY\b", re.IGNORECASE)
_HEADER = re.compile(r"^CREATE\s+TABLE\s+`(?:[^`]|``)*`", re.IGNORECASE)
# An index line: "  UNIQUE KEY `name` (...)", "  FULLTEXT KEY ...", "  KEY ...".
_KEY_LINE = re.compile(r"^\s*((?:UNIQUE|FULLTEXT|SPATIAL)\s+)?KEY\s+`((?:[^`]|``)*)`")
_FIRST_COLUMN = re.compile(r"\(`((?:[^`]|``)*)`")
# A column line: "  `name` type ...".
_COLUMN_LINE = re.compile(r"^\s+`((?:[^`]|``)*)`\s")


@dataclass
class TargetTable:
    """How a unit writes: the Table its statements use, converters, and what `prepare` does."""

    table: sa.Table
    key: tuple[str, ...]
    converters: dict[str, Convert] = field(default_factory=dict)
    ddl: str | None = None  # None: the table exists and is compatible
    warnings: list[str] = field(default_factory=list)

    @property
    def state(self) -> str:
        """`create` or `exists, compatible`, as `plan` shows it."""
        return "create" if self.ddl else "exists, compatible"


def _show_create(source: Connection, table: SourceTable) -> list[str]:
    """The lines of the source's `SHOW CREATE TABLE`."""
    cursor = source.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:  # with a parameter sequence, so the driver undoes quote()'s doubled `%`
        cursor.execute(f"SHOW CREATE TABLE {quote(source.engine, table.name)}", ())
        row = cursor.fetchone()
        return (str(row[1]) if row else "").split("\n")
    finally:
        cursor.close()


def _deferred_name(line: str, table: SourceTable) -> str | None:
    """The name of the index a DDL line defines, if it is built after the rows: every
    index but the primary key, the unique key the table is keyed by, and one that
    leads with the AUTO_INCREMENT column (MySQL wants that column indexed from the
    start)."""
    found = _KEY_LINE.match(line)
    if found is None:
        return None
    name = found.group(2).replace("``", "`")
    if table.key_origin == f"unique key {name}":
        return None
    first = _FIRST_COLUMN.search(line, found.end())
    numbered = {col.name for col in table.columns if col.auto_increment}
    if first is not None and first.group(1).replace("``", "`") in numbered:
        return None
    return name


def mysql_index_lines(source: Connection, table: SourceTable) -> dict[str, str]:
    """The indexes built after the rows, by name: each the source's own definition
    (`KEY `name` (...)`, prefixes, FULLTEXT and SPATIAL included), for `ADD`."""
    lines = _show_create(source, table)
    left_out = _left_out(lines, table)
    found = {}
    for line in lines:
        name = _deferred_name(line, table)
        if name is not None and not _mentions(line, left_out):
            found[name] = line.strip().rstrip(",")
    return found


def mysql_create_statement(source: Connection, target: Engine, table: SourceTable) -> str:
    """The source's own CREATE TABLE, with the name re-quoted for the target, without
    foreign keys and the indexes built after the rows (`mysql_index_lines`).

    Using `SHOW CREATE TABLE` keeps every type exactly (ENUM, SET, YEAR, GEOMETRY,
    unsigned integers, character sets, collations, defaults, comments, the
    AUTO_INCREMENT counter). Foreign keys are added once every table is in
    (`finish.py`): units are copied in parallel and in any order. Triggers are not
    copied, so a copied table is never also written to by a trigger on the target.
    """
    lines = _show_create(source, table)
    kept: list[str] = []
    left_out = _left_out(lines, table)
    for line in lines:
        if _FK_LINE.match(line) or _mentions(line, left_out):
            continue
        if _deferred_name(line, table) is not None:
            continue
        if line.startswith(")") and kept and kept[-1].endswith(","):
            kept[-1] = kept[-1][:-1]
        kept.append(line)
    header = "CREATE TABLE " + plain_quote(target, table.target)  # sent without parameters
    kept[0] = _HEADER.sub(lambda _m: header, kept[0], count=1)
    return "\n".join(kept)


def _left_out(lines: list[str], table: SourceTable) -> set[str]:
    """The quoted names of the columns the DDL has and the job leaves out (its
    `columns` or `exclude_columns`).

    Raises:
        TableUnsupported: a copied column is computed from one left out.
    """
    copied = {col.name for col in table.columns}
    defined = [m.group(1).replace("``", "`") for m in map(_COLUMN_LINE.match, lines) if m]
    left_out = {f"`{name.replace('`', '``')}`" for name in defined if name not in copied}
    for line in lines:
        found = _COLUMN_LINE.match(line)
        if found and found.group(1).replace("``", "`") in copied:
            rest = line[found.end() :]
            for name in left_out:
                if name in rest:
                    raise TableUnsupported(
                        f"table {table.name!r}: column {found.group(1)!r} is computed from"
                        f" column {name}, which the job's table_settings leave out"
                    )
    return left_out


def _mentions(line: str, names: set[str]) -> bool:
    """Whether a DDL line defines one of the quoted column `names`, or is a key or
    constraint over one of them (never the CREATE line or the closing options line)."""
    if not names or line.startswith(("CREATE", ")")):
        return False
    column = _COLUMN_LINE.match(line)
    if column is not None:
        return f"`{column.group(1)}`" in names
    key = _KEY_LINE.match(line)
    rest = line[key.end() :] if key is not None else line
    return any(name in rest for name in names)


def _mysql_fits(src: SourceColumn, dst: SourceColumn) -> bool:
    if src.column_type.lower() == dst.column_type.lower():
        return True
    kind, dkind = src.kind, dst.kind
    if kind in ("integer", "year", "bit"):
        lo, hi = _source_range(src)
        if dkind == "integer":
            dlo, dhi = integer_range(INTEGER_BYTES[dst.data_type], dst.unsigned)
            return dlo <= lo and hi <= dhi
        if dkind == "decimal":
            return (dst.precision or 0) - (dst.scale or 0) >= decimal_digits(max(-lo, hi))
        return False
    if kind == "decimal" and dkind == "decimal":
        return _decimal_fits(src, dst.precision, dst.scale)
    if kind == "float":
        return dkind == "float" and (src.data_type == "float" or dst.data_type == "double")
    if kind in ("string", "enum", "set") and dkind == "string":
        return dst.char_length is None or (src.char_length or 0) <= dst.char_length
    if kind == "binary" and dkind == "binary":
        return dst.char_length is None or (src.char_length or 0) <= dst.char_length
    if kind == "geometry":
        return dst.data_type == "geometry" or dst.data_type in ("blob", "longblob")
    if kind == "date":
        return dkind in ("date", "datetime")
    return kind in ("datetime", "time") and dkind == kind


def _source_range(col: SourceColumn) -> tuple[int, int]:
    if col.kind == "year":
        return 1901, 2155
    if col.kind == "bit":
        return 0, 2 ** (col.precision or 64) - 1
    return integer_range(INTEGER_BYTES[col.data_type], col.unsigned)


def _decimal_fits(src: SourceColumn, precision: int | None, scale: int | None) -> bool:
    if precision is None:
        return True
    scale = scale or 0
    return precision - scale >= (src.precision or 0) - (src.scale or 0) and scale >= (
        src.scale or 0
    )


_CATEGORIES: tuple[tuple[type[TypeEngine[Any]], str], ...] = (
    (sqltypes.Integer, "integer"),
    (sqltypes.Float, "float"),  # before Numeric: a Float is a Numeric
    (sqltypes.Numeric, "decimal"),
    (sqltypes.String, "text"),
    (sqltypes._Binary, "binary"),
    (sqltypes.DateTime, "datetime"),
    (sqltypes.Date, "date"),
    (sqltypes._AbstractInterval, "interval"),
)
"""A target column type's category for `_portable_fits`, the first match in this order."""


def _category(t: TypeEngine[Any]) -> str:
    return next((name for kind, name in _CATEGORIES if isinstance(t, kind)), "other")


def _integer_size(t: TypeEngine[Any], sqlite: bool) -> int:
    if sqlite or isinstance(t, sqltypes.BigInteger):
        return 8
    if isinstance(t, sqltypes.SmallInteger):
        return 2
    return 4


def _portable_fits(src: SourceColumn, t: TypeEngine[Any], sqlite: bool) -> bool:
    cat, kind = _category(t), src.kind
    length = getattr(t, "length", None)
    if kind in ("integer", "year", "bit"):
        lo, hi = _source_range(src)
        if sqlite and src.auto_increment:  # a numbered key, see typemap.NUMBERED_UNSIGNED
            hi = min(hi, 2**63 - 1)
        if cat == "integer":
            dlo, dhi = integer_range(_integer_size(t, sqlite), False)
            return dlo <= lo and hi <= dhi
        if cat == "decimal" and not sqlite:
            precision, scale = getattr(t, "precision", None), getattr(t, "scale", None) or 0
            return precision is None or precision - scale >= decimal_digits(max(-lo, hi))
        return cat == "text" and sqlite and (src.unsigned or kind == "bit")
    if kind == "decimal":
        if sqlite:
            return cat == "text"
        return cat == "decimal" and _decimal_fits(src, t.precision, t.scale)  # type: ignore[attr-defined]
    if kind == "float":
        return cat == "float"
    if kind in ("string", "enum", "set"):
        return cat == "text" and (length is None or (src.char_length or 0) <= length)
    if kind in ("binary", "geometry"):
        return cat == "binary"
    if kind == "date":
        return cat in ("date", "datetime")
    if kind == "datetime":
        return cat == "datetime"
    if kind == "time":
        return cat == "interval" or (sqlite and cat == "datetime")
    return True


def _incompatible(table: str, problems: list[str]) -> SchemaIncompatible:
    return SchemaIncompatible(
        f"target table {table!r} exists but cannot take the source rows: " + "; ".join(problems)
    )


def _check_mysql(conn: Connection, schema: str, source: SourceTable, write_mode: str) -> None:
    existing = read_mysql_catalog(conn, schema)[source.target]
    by_name = {col.name: col for col in existing.columns}
    problems = []
    for col in source.columns:
        dst = by_name.get(col.name)
        if dst is None:
            problems.append(f"column {col.name!r} is missing")
        elif not _mysql_fits(col, dst):
            problems.append(
                f"column {col.name!r} is {dst.column_type}, source is {col.column_type}"
            )
    if write_mode != "append" and source.key and set(existing.key) != set(source.key):
        problems.append(f"no primary or unique key on ({', '.join(source.key)}) to upsert on")
    if problems:
        raise _incompatible(source.target, problems)


_SQLITE_DECIMAL = (
    " (SQLite keeps a NUMERIC value as a binary float, which rounds it: DataTrace keeps"
    " DECIMAL in SQLite as exact text, so the column must be TEXT)"
)


def _check_portable(conn: Connection, source: SourceTable, write_mode: str) -> None:
    inspector = sa.inspect(conn)
    sqlite = conn.dialect.name == "sqlite"
    columns = {c["name"]: c for c in inspector.get_columns(source.target)}
    problems = []
    for col in source.columns:
        dst = columns.get(col.name)
        if dst is None:
            problems.append(f"column {col.name!r} is missing")
        elif not _portable_fits(col, dst["type"], sqlite):
            why = _SQLITE_DECIMAL if sqlite and col.kind == "decimal" else ""
            problems.append(
                f"column {col.name!r} is {dst['type']}, source is {col.column_type}{why}"
            )
    if write_mode != "append" and source.key:
        keys: list[list[Any]] = [
            inspector.get_pk_constraint(source.target).get("constrained_columns") or []
        ]
        keys += [u["column_names"] for u in inspector.get_unique_constraints(source.target)]
        keys += [i["column_names"] for i in inspector.get_indexes(source.target) if i["unique"]]
        if not any(set(k) == set(source.key) for k in keys):
            problems.append(f"no primary or unique key on ({', '.join(source.key)}) to upsert on")
    if problems:
        raise _incompatible(source.target, problems)


def portable_ddl(table: sa.Table, target: Engine) -> str:
    """CREATE TABLE for `target`, names quoted as the server reads them: compiled for a
    dialect that formats no `%` (the DDL is sent without parameters)."""
    make: Any = type(target.dialect)
    dialect = make(paramstyle="named")
    return str(CreateTable(table).compile(dialect=dialect)).strip()


def target_table(
    source: Connection,
    target: Engine,
    table: SourceTable,
    *,
    write_mode: str = "upsert",
    links: Sequence[ForeignKey] = (),
) -> TargetTable:
    """Work out the target side of a unit without writing anything; `links` are the
    table's foreign keys under target names, declared in a SQLite CREATE.

    Raises:
        SchemaIncompatible: the target table exists and cannot take the source rows.
    """
    with target.connect() as conn:
        exists = sa.inspect(conn).has_table(table.target)
        if is_mysql(target) and source.dialect.name in ("mysql", "mariadb"):
            writable = table.sa_table(name=table.target, writable=True)
            spec = TargetTable(table=writable, key=table.key)
            if exists:
                _check_mysql(conn, str(target.url.database), table, write_mode)
            else:
                spec.ddl = mysql_create_statement(source, target, table)
            return spec
        portable, converters, warnings = portable_table(
            table.target, list(table.columns), table.key, target.dialect.name
        )
        if target.dialect.name == "sqlite":
            declare_foreign_keys(portable, links)
        spec = TargetTable(portable, table.key, converters, warnings=warnings)
        if exists:
            _check_portable(conn, table, write_mode)
        else:
            spec.ddl = portable_ddl(portable, target)
        return spec


def create_target(target: Engine, spec: TargetTable) -> None:
    """Create the target table if `spec` says it is missing; a no-op otherwise."""
    if spec.ddl is None:
        return
    with target.begin() as conn:
        if sa.inspect(conn).has_table(spec.table.name):
            return  # another runner created it in the meantime
        if is_mysql(target):
            # no_parameters: the DDL goes verbatim, a "%" in a comment is not a placeholder.
            conn.exec_driver_sql(spec.ddl, execution_options={"no_parameters": True})
            return
        for sequence in spec.table.info.get("sequences", ()):
            conn.exec_driver_sql(
                f"CREATE SEQUENCE IF NOT EXISTS {plain_quote(target, sequence)}",
                execution_options={"no_parameters": True},
            )
        spec.table.create(conn)
