"""How MySQL column types land on PostgreSQL and SQLite, and what cannot round-trip.

MySQL to MySQL keeps the source DDL verbatim (see `ddl.py`); this module is only for
other targets. Each mapping picks the narrowest portable type that holds every value
of the source type exactly; where that is impossible the column gets a warning.
"""

from __future__ import annotations

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


def _integer(col: SourceColumn, dialect: str) -> Mapped:
    size = INTEGER_BYTES[col.data_type]
    if dialect == "sqlite":
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


def portable_table(
    name: str, columns: list[SourceColumn], key: tuple[str, ...], dialect: str
) -> tuple[sa.Table, dict[str, Convert], list[str]]:
    """The target Table for `dialect`, the per-column converters and the caveats."""
    converters: dict[str, Convert] = {}
    warnings: list[str] = []
    sa_columns = []
    for col in columns:
        mapped = map_column(col, dialect)
        if mapped.convert is not None:
            converters[col.name] = mapped.convert
        if mapped.warning:
            warnings.append(f"{col.name}: {mapped.warning}")
        sa_columns.append(
            sa.Column(col.name, mapped.type, nullable=col.nullable, autoincrement=False)
        )
    table = sa.Table(name, sa.MetaData(), *sa_columns)
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
