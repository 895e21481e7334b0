"""Generated type cases: every MariaDB column type the engine copies, with values at
its extremes, and the smallest change each stored value can take.

A case is a one-column table `t_<slug> (id INT PRIMARY KEY, v <type>)` whose rows are
built from the type's own limits (integer ranges from their widths, DECIMAL digits from
precision and scale, FLOAT and DOUBLE from their binary formats), not listed by hand.
`nudge` gives the neighbouring value of what a target holds, in whatever form that
target stores the column (SQLite keeps DECIMAL as text and TIME as a datetime, say).
"""

from __future__ import annotations

import datetime as dt
import math
import struct
from dataclasses import dataclass
from decimal import Context, Decimal, localcontext
from typing import Any

from datatrace_tasks.sync.typemap import integer_range

INTEGERS = {"tinyint": 1, "smallint": 2, "mediumint": 3, "int": 4, "bigint": 8}


@dataclass(frozen=True)
class Case:
    """One column type and the SQL literals of its rows."""

    slug: str
    column_type: str
    literals: tuple[str, ...]

    @property
    def table(self) -> str:
        """The case's table name."""
        return f"t_{self.slug}"

    def create_sql(self) -> str:
        """The source table."""
        return f"CREATE TABLE {self.table} (id INT PRIMARY KEY, v {self.column_type})"

    def insert_sql(self) -> str:
        """Every row, ids from 1, plus one NULL row."""
        rows = [f"({i}, {lit})" for i, lit in enumerate(self.literals, 1)]
        rows.append(f"({len(self.literals) + 1}, NULL)")
        return f"INSERT INTO {self.table} VALUES {', '.join(rows)}"  # noqa: S608


def _quoted(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def _integer_cases() -> list[Case]:
    out = []
    for name, size in INTEGERS.items():
        for unsigned in (False, True):
            lo, hi = integer_range(size, unsigned)
            values = sorted({lo, hi, 0, lo + 1, hi - 1, 1 if unsigned else -1})
            suffix = " UNSIGNED" if unsigned else ""
            slug = f"{name}_u" if unsigned else name
            out.append(Case(slug, name + suffix, tuple(str(v) for v in values)))
    return out


def _decimal_cases() -> list[Case]:
    out = []
    for precision, scale in ((65, 30), (65, 0), (10, 2), (5, 5), (1, 0)):
        whole = precision - scale
        top = ("9" * whole or "0") + ("." + "9" * scale if scale else "")
        tiny = "0." + "0" * (scale - 1) + "1" if scale else "1"
        values = [top, "-" + top, "0", tiny, "-" + tiny]
        out.append(
            Case(f"decimal_{precision}_{scale}", f"DECIMAL({precision},{scale})", tuple(values))
        )
    return out


def _float32(bits: int) -> float:
    return float(struct.unpack(">f", bits.to_bytes(4, "big"))[0])


def _float64(bits: int) -> float:
    return float(struct.unpack(">d", bits.to_bytes(8, "big"))[0])


def _float_cases() -> list[Case]:
    single = [
        _float32(0x7F7FFFFF),  # largest
        _float32(0x00800000),  # smallest normal
        _float32(0x00000001),  # smallest subnormal
        _float32(0x4B800001),  # 16777218: beyond 6 digits
        -_float32(0x3DCCCCCD),  # -0.1 as a float
    ]
    double = [
        _float64(0x7FEFFFFFFFFFFFFF),
        _float64(0x0010000000000000),
        _float64(0x0000000000000001),
        -_float64(0x3FB999999999999A),
        1 / 3,
        2.0**53 + 2,
    ]
    return [
        Case("float", "FLOAT", tuple(repr(v) for v in single)),
        Case("double", "DOUBLE", tuple(repr(v) for v in double)),
    ]


def _bit_cases() -> list[Case]:
    out = []
    for width in (1, 8, 63, 64):
        top = 2**width - 1
        values = sorted({0, top, top >> 1, 1})
        out.append(Case(f"bit_{width}", f"BIT({width})", tuple(str(v) for v in values)))
    return out


def _time_cases() -> list[Case]:
    return [
        Case("date", "DATE", ("'1000-01-01'", "'9999-12-31'", "'2024-02-29'")),
        Case("datetime_0", "DATETIME", ("'1000-01-01 00:00:00'", "'9999-12-31 23:59:59'")),
        Case(
            "datetime_6",
            "DATETIME(6)",
            (
                "'1000-01-01 00:00:00.000000'",
                "'9999-12-31 23:59:59.999999'",
                "'2000-01-01 12:00:00.5'",
            ),
        ),
        Case(
            "timestamp_6",
            "TIMESTAMP(6) NULL",
            ("'1970-01-01 00:00:01.000000'", "'2038-01-19 03:14:07.999999'"),
        ),
        Case(
            "time_6",
            "TIME(6)",
            ("'-838:59:59.000000'", "'838:59:59.000000'", "'-00:00:00.000001'", "'100:00:00.5'"),
        ),
        Case("year", "YEAR", ("1901", "2155", "2000")),
    ]


_TEXTS = ("''", _quoted("a"), _quoted("纵横 😀 ñ"), _quoted("\t\n'\"`\\ \x01;"))


def _text_cases() -> list[Case]:
    out = [Case("char_10", "CHAR(10)", (*_TEXTS, _quoted("x" * 10)))]
    out.append(Case("varchar_50", "VARCHAR(50)", (*_TEXTS, _quoted("ends with spaces  "))))
    for name in ("tinytext", "text", "mediumtext", "longtext"):
        out.append(Case(name, name.upper(), (*_TEXTS, _quoted("trailing "))))
    out.append(Case("json", "JSON", ("'{\"a\": [1, 2.5, null]}'", "'[]'")))
    out.append(Case("enum", "ENUM('a','b','c')", ("'a'", "'c'")))
    out.append(Case("set", "SET('p','q','r')", ("''", "'p'", "'p,r'", "'p,q,r'")))
    return out


def _binary_cases() -> list[Case]:
    values = ("X''", "X'00'", "X'FF00FF'", "X'" + bytes(range(256)).hex() + "'")
    return [
        Case("binary_8", "BINARY(8)", ("X'0001020304050607'", "X'00'", "X'FFFFFFFFFFFFFFFF'")),
        Case("varbinary_300", "VARBINARY(300)", values),
        Case("tinyblob", "TINYBLOB", values[:3]),
        Case("blob", "BLOB", values),
        Case("mediumblob", "MEDIUMBLOB", (*values, "REPEAT(X'AB', 100000)")),
        Case("longblob", "LONGBLOB", values),
    ]


def _other_cases() -> list[Case]:
    return [
        Case("point", "POINT", ("POINT(1, 2)", "POINT(-180, 90.5)")),
        Case("geometry", "GEOMETRY", ("ST_GeomFromText('LINESTRING(0 0, 1 1, 2 5)')",)),
        Case("uuid", "UUID", ("'123e4567-e89b-12d3-a456-426614174000'",)),
        Case("inet6", "INET6", ("'::1'", "'2001:db8::ff00:42:8329'")),
    ]


def generated_cases() -> list[Case]:
    """Every case, generated from the types' limits."""
    return [
        *_integer_cases(),
        *_decimal_cases(),
        *_float_cases(),
        *_bit_cases(),
        *_time_cases(),
        *_text_cases(),
        *_binary_cases(),
        *_other_cases(),
    ]


def _next_float32(value: float) -> float:
    bits = int.from_bytes(struct.pack(">f", value), "big")
    return _float32(bits + 1 if bits & 0x7FFFFFFF < 0x7F7FFFFF else bits - 1)


def _nudge_text(case: Case, text: str) -> str:
    if case.slug == "enum":
        return "b" if text != "b" else "a"
    if case.slug == "set":
        members = [m for m in text.split(",") if m]
        toggled = [m for m in members if m != "q"] if "q" in members else [*members, "q"]
        return ",".join(sorted(toggled))
    if case.slug.startswith("char") or case.slug in ("uuid", "inet6"):
        if not text:
            return "b"
        last = text[-1]
        swap = {"f": "e", "9": "8", ":": ":"}.get(last, "1" if last.isdigit() else "b")
        if case.slug == "inet6" and last == "1":
            swap = "2"
        return text[:-1] + (swap if swap != last else "0")
    return text + " "  # one trailing space


def _nudge_stamp(text: str, delta: dt.timedelta) -> str:
    """A SQLite datetime text moved by `delta`, in the same layout."""
    value = dt.datetime.fromisoformat(text)
    return (value + delta).isoformat(sep=" ", timespec="microseconds")[: max(len(text), 19)]


def nudge(case: Case, value: Any, *, target: str) -> Any:
    """The neighbour of a stored value: the smallest change its type can hold."""
    slug = case.slug
    if isinstance(value, bool):
        return not value
    if slug.startswith("bit_"):
        number = int.from_bytes(value, "big") if isinstance(value, bytes) else int(value)
        flipped = number ^ 1
        if isinstance(value, bytes):
            return flipped.to_bytes(len(value), "big")
        return str(flipped) if isinstance(value, str) else flipped
    if slug.removesuffix("_u") in INTEGERS and not isinstance(value, int):
        return str(nudge(case, int(value), target=target))  # text or numeric(20)
    if isinstance(value, int):
        size = INTEGERS.get(slug.removesuffix("_u"))
        hi = integer_range(size, slug.endswith("_u"))[1] if size else 2155
        return value - 1 if value >= hi else value + 1
    if slug.startswith("decimal_"):
        scale = int(slug.rsplit("_", 1)[1])
        number = Decimal(str(value))
        step = Decimal(1).scaleb(-scale)
        with localcontext(Context(prec=100)):  # DECIMAL has 65 digits, the default 28
            moved = number - step if number > 0 else number + step
        return format(moved, "f") if isinstance(value, str) else moved
    if isinstance(value, float):
        if slug == "float" and target == "mysql":
            return _next_float32(value)
        return math.nextafter(value, 0.0 if abs(value) > 1 else math.inf)
    if isinstance(value, dt.datetime):
        return value - dt.timedelta(microseconds=1 if value.microsecond or "6" in slug else 10**6)
    if isinstance(value, dt.date):
        return value + dt.timedelta(days=-1 if value.year == 9999 else 1)
    if isinstance(value, dt.timedelta):
        return value + dt.timedelta(microseconds=1 if value < dt.timedelta(0) else -1)
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytearray(value)
        if not data:
            return b"\x01"
        data[-1] ^= 1
        return bytes(data)
    if (
        isinstance(value, str)
        and target == "sqlite"
        and slug.startswith(("datetime", "timestamp", "time_"))
    ):
        return _nudge_stamp(value, dt.timedelta(microseconds=-1 if "6" in slug else -(10**6)))
    if isinstance(value, str) and target == "sqlite" and slug == "date":
        day = dt.date.fromisoformat(value[:10])
        return (day + dt.timedelta(days=-1 if day.year == 9999 else 1)).isoformat()
    if isinstance(value, str):
        return _nudge_text(case, value)
    raise TypeError(f"no nudge for {slug}: {value!r}")


MATRIX_BEGIN = (
    "<!-- type matrix: generated by scripts/type_matrix.py from tests/sync/typecases.py -->"
)
MATRIX_END = "<!-- end of type matrix -->"


def matrix_markdown(columns: dict[str, Any]) -> str:
    """The README's type matrix: per case, what each target stores.

    `columns` maps each case's table to the source catalog's `SourceColumn` of `v`.
    Every cell is backed by `test_verify_matrix.py`, which copies the case's values
    through each write path and verifies them value-exact.
    """
    from sqlalchemy.dialects import postgresql, sqlite

    from datatrace_tasks.sync.typemap import map_column

    dialects = {"postgresql": postgresql.dialect(), "sqlite": sqlite.dialect()}
    lines = [
        MATRIX_BEGIN,
        "| MariaDB type | values tried | MariaDB | PostgreSQL | SQLite |",
        "|---|---|---|---|---|",
    ]
    for case in generated_cases():
        column = columns[case.table]
        cells = []
        for name, dialect in dialects.items():
            mapped = map_column(column, name)
            stored = mapped.type.compile(dialect=dialect)
            note = f"; {mapped.warning}" if mapped.warning else ""
            cells.append(f"exact as `{stored}`{note}")
        lines.append(
            f"| `{case.column_type}` | {len(case.literals)} + NULL | exact (same DDL) | "
            + " | ".join(cells)
            + " |"
        )
    lines.append(MATRIX_END)
    return "\n".join(lines)
