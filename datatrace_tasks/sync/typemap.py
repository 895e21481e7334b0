"""How MySQL column types land on PostgreSQL and SQLite, and what cannot round-trip.

MySQL to MySQL keeps the source DDL verbatim (see `ddl.py`); this module is only for
other targets. Each mapping picks the narrowest portable type that holds every value
of the source type exactly; where that is impossible the column gets a warning.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeEngine

from datatrace_tasks.sync.catalog import INTEGER_BYTES, SourceColumn

Convert = Callable[[Any], Any]


@dataclass(frozen=True)
class Mapped:
    """The target type of one column, how values are converted, and any caveat."""

    type: TypeEngine[Any]
    convert: Convert | None = None
    warning: str | None = None


def _bit_to_int(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return int.from_bytes(value, "big")
    return value


def _bit_to_text(value: Any) -> Any:
    return None if value is None else str(_bit_to_int(value))


def _to_text(value: Any) -> Any:
    if isinstance(value, Decimal):  # str() would say 0E-10; MySQL says 0.0000000000
        return format(value, "f")
    return None if value is None else str(value)


NUMBERED_UNSIGNED = (
    "BIGINT UNSIGNED AUTO_INCREMENT stored as SQLite's 64-bit INTEGER key, which numbers"
    " new rows: a value past 2^63 - 1 is refused, not changed"
)


def _integer(col: SourceColumn, dialect: str) -> Mapped:
    size = INTEGER_BYTES[col.data_type]
    if dialect == "sqlite":
        if col.auto_increment and col.unsigned and size == 8:
            # A numbered key is SQLite's INTEGER primary key, which numbers new rows.
            return Mapped(sa.BigInteger(), None, NUMBERED_UNSIGNED)
        # SQLite integers are 64-bit signed whatever the declared type.
        if col.unsigned and size == 8:
            return Mapped(
                sa.Text(), _to_text, "BIGINT UNSIGNED stored as text: SQLite has no 64-bit unsigned"
            )
        return Mapped(sa.BigInteger() if size > 4 else sa.Integer())
    # Unsigned needs the next wider signed type to hold its top half.
    need = size * 2 if col.unsigned else size
    if need <= 2:
        return Mapped(sa.SmallInteger())
    if need <= 4:
        return Mapped(sa.Integer())
    if need <= 8:
        return Mapped(sa.BigInteger())
    return Mapped(sa.Numeric(20, 0), None, "BIGINT UNSIGNED stored as numeric(20)")


def _bit(col: SourceColumn, dialect: str) -> Mapped:
    """BIT(n) as an integer; BIT(64) does not fit a signed BIGINT, so it takes a wider type."""
    if (col.precision or 64) < 64:
        return Mapped(sa.BigInteger(), _bit_to_int, "BIT stored as an integer")
    if dialect == "sqlite":
        return Mapped(sa.Text(), _bit_to_text, "BIT(64) stored as decimal text: up to 2^64 - 1")
    return Mapped(sa.Numeric(20, 0), _bit_to_int, "BIT(64) stored as numeric(20)")


def map_column(col: SourceColumn, dialect: str) -> Mapped:
    """The target type for a MySQL column on `dialect` ("postgresql" or "sqlite")."""
    kind = col.kind
    if kind == "integer":
        return _integer(col, dialect)
    if kind == "year":
        return Mapped(sa.SmallInteger())
    if kind == "bit":
        return _bit(col, dialect)
    if kind == "decimal":
        if dialect == "sqlite":
            return Mapped(
                sa.Text(), _to_text, "DECIMAL stored as exact text: SQLite has no decimal type"
            )
        return Mapped(sa.Numeric(col.precision, col.scale))
    if kind == "float":
        # Double even for FLOAT: MySQL sends the shortest text of the value, which
        # a double holds exactly and a single-precision real may not.
        return Mapped(sa.Double())
    if kind == "string":
        # VARCHAR even for CHAR: MySQL strips CHAR padding on read, PostgreSQL would add it.
        if col.data_type in ("char", "varchar") and col.char_length:
            return Mapped(sa.String(col.char_length))
        return Mapped(sa.Text())
    if kind == "enum":
        return Mapped(sa.String(col.char_length), None, f"{col.column_type} stored as text")
    if kind == "set":
        return Mapped(sa.Text(), None, f"{col.column_type} stored as comma-separated text")
    if kind == "binary":
        return Mapped(sa.LargeBinary())
    if kind == "geometry":
        return Mapped(
            sa.LargeBinary(), None, f"{col.data_type.upper()} stored as WKB bytes; SRID dropped"
        )
    if kind == "date":
        return Mapped(sa.Date())
    if kind == "datetime":
        return Mapped(sa.DateTime())
    if kind == "time":
        return Mapped(sa.Interval(), None, "TIME stored as an interval")
    return Mapped(sa.Text(), _to_text, f"{col.column_type} has no mapping; stored as text")


_NUMBER = re.compile(r"^-?\d+(\.\d+)?([eE][-+]?\d+)?$")
_NOW = re.compile(r"^(current_timestamp|now)(\(\d?\))?$", re.IGNORECASE)
_TEXT_KINDS = frozenset({"string", "enum", "set", "date", "datetime", "time"})


def portable_default(col: SourceColumn, dialect: str) -> tuple[str | None, str | None]:
    """The column's default as SQL both PostgreSQL and SQLite read, and a caveat.

    Literals keep their text (MariaDB's COLUMN_DEFAULT is already SQL: `'it''s'`,
    `1.50`); `current_timestamp()` becomes CURRENT_TIMESTAMP; anything else, an
    expression or a zero date, is not copied and says so.
    """
    raw = col.default
    if raw is None or raw == "NULL" or col.auto_increment:
        return None, None
    numeric = col.kind in ("integer", "decimal", "float", "year")
    if numeric and _NUMBER.match(raw):
        # SQLite keeps a DECIMAL as exact text: a number would lose its trailing zeros.
        return (f"'{raw}'" if dialect == "sqlite" and col.kind == "decimal" else raw), None
    if col.kind in _TEXT_KINDS and raw.startswith("'") and not raw.startswith("'0000-00-00"):
        return raw, None
    if col.kind in ("date", "datetime") and _NOW.match(raw):
        return "CURRENT_TIMESTAMP", None
    return None, f"default {raw} not copied"


def _extra_caveat(col: SourceColumn) -> str | None:
    extra = col.extra.lower()
    if col.generated:
        return "generated column stored as plain values (its expression is not copied)"
    if "on update" in extra:
        return f"{col.extra.upper()} not copied: no such clause outside MySQL"
    return None


def _column(
    table: str, col: SourceColumn, mapped: Mapped, sole_key: bool, dialect: str
) -> sa.Column[Any]:
    """The target column: type, NOT NULL, default, comment, and numbering for an
    AUTO_INCREMENT column (an identity on PostgreSQL; on SQLite an INTEGER primary key,
    which numbers new rows by itself)."""
    default, _ = portable_default(col, dialect)
    kind: TypeEngine[Any] = mapped.type
    if col.auto_increment and dialect == "postgresql":
        default = f"nextval({_literal(_quoted(sequence_name(table, col.name)))})"
    elif col.auto_increment and sole_key and isinstance(kind, sa.Integer):
        kind = sa.Integer()
    return sa.Column(
        col.name,
        kind,
        nullable=col.nullable,
        autoincrement=False,
        # `\:`: a `:word` in a default is text, not a bind parameter.
        server_default=None if default is None else sa.text(default.replace(":", "\\:")),
        comment=col.comment or None,
    )


def sequence_name(table: str, column: str) -> str:
    """The PostgreSQL sequence that numbers new rows of an AUTO_INCREMENT column, as
    pgloader's serial columns do (one named after table and column, cut to 63 bytes)."""
    name = f"{table}_{column}_seq"
    if len(name.encode()) <= 63:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return name.encode()[:54].decode(errors="ignore") + "_" + digest


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def portable_table(
    name: str,
    columns: list[SourceColumn],
    key: tuple[str, ...],
    dialect: str,
    metadata: sa.MetaData | None = None,
) -> tuple[sa.Table, dict[str, Convert], list[str]]:
    """The target Table for `dialect`, the per-column converters and the caveats."""
    converters: dict[str, Convert] = {}
    warnings: list[str] = []
    sa_columns = []
    for col in columns:
        mapped = map_column(col, dialect)
        if mapped.convert is not None:
            converters[col.name] = mapped.convert
        caveats = [mapped.warning, portable_default(col, dialect)[1], _extra_caveat(col)]
        warnings += [f"{col.name}: {caveat}" for caveat in caveats if caveat]
        sa_columns.append(_column(name, col, mapped, key == (col.name,), dialect))
    table = sa.Table(name, metadata or sa.MetaData(), *sa_columns)
    if dialect == "postgresql":  # created before the table (ddl.create_target)
        numbered = [c.name for c in columns if c.auto_increment]
        table.info["sequences"] = [sequence_name(name, c) for c in numbered]
    if key:
        table.append_constraint(sa.PrimaryKeyConstraint(*key))
    return table, converters, warnings


def decimal_digits(value: int) -> int:
    """How many decimal digits `value` has."""
    return len(str(abs(value)))


def integer_range(size: int, unsigned: bool) -> tuple[int, int]:
    """The (min, max) of a MySQL integer of `size` bytes."""
    if unsigned:
        return 0, 2 ** (8 * size) - 1
    return -(2 ** (8 * size - 1)), 2 ** (8 * size - 1) - 1
