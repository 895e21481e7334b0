"""Value tokens: each server's own exact reading of each type, as SQL.

Verification (`fingerprint.py`) joins a row's tokens and hashes them; nothing here is
used by the copy. The table says how each kind becomes a token on each server:

| kind | token | MySQL reads it as | PostgreSQL | SQLite |
|---|---|---|---|---|
| integer, year, bit | decimal digits | its text (BIT: `x + 0`) | `x::text` | `CAST(x AS TEXT)` |
| decimal | digits, no trailing zeros | its text, trimmed | `trim_scale(x)` | its text, trimmed |
| float | `[-]M p E`, x = M * 2^E exactly | `CAST(x AS DOUBLE)` | `float8` | `REAL` |
| date | `YYYY-MM-DD` | its text | `to_char` | its text |
| datetime | `YYYY-MM-DD HH:MM:SS.ffffff` | its text, padded | `to_char(.US)` | its text, padded |
| time | signed microseconds | `TIME_TO_SEC` | `extract(epoch)` | seconds of its text |
| text kinds | `UTF-8 bytes:text` | `CONVERT(x USING utf8mb4)` | `x::text` | `x` |
| binary | upper-case hex of every byte | `HEX(x)` | `encode(x, 'hex')` | `hex(x)` |
| geometry | hex of the WKB (with SRID MySQL to MySQL) | bytes after the SRID | bytea | blob |

A float's token is its binary mantissa and exponent, found with `LOG2` and powers of
two (both exact operations on a double): the servers' shortest decimal texts have
the same digits but not the same layout (`1e20` against `1e+20`, `0.00001` against
`1e-05`). NULL is `N`, which no token can be (text tokens start with a length). A
text, binary or geometry value over `LONG` bytes is `#` and the SHA-256 of its bytes,
computed by the server too (SQLite: by the function `register_sqlite` gives it).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from datatrace_tasks.sync.catalog import SourceColumn

LONG = 1024
"""A text or binary value longer than this many bytes is tokenised by its SHA-256, so a
row's text stays far below a server's packet limit (MySQL makes a longer string
function result NULL: a 9 MB BLOB's hex once read as NULL)."""


def always_short(col: SourceColumn) -> bool:
    """A column whose declared size can never pass `LONG` bytes (VARCHAR(40): 160 bytes
    of UTF-8 at most), so no length check is needed: the same rule on every server, as
    it reads the source column's declaration."""
    if col.char_length is None:
        return False
    per_char = 1 if col.kind in ("binary", "geometry") else 4
    return col.char_length * per_char <= LONG


SQLITE_SHA256 = "datatrace_sha256"  # registered on each SQLite connection that needs it


def register_sqlite(driver: Any) -> None:
    """Give a sqlite3 connection the SHA-256 that long values are tokenised with."""
    driver.create_function(
        SQLITE_SHA256,
        1,
        lambda data: None if data is None else hashlib.sha256(bytes(data)).hexdigest(),
        deterministic=True,
    )


def _float_mysql(x: str) -> str:
    a = f"ABS(CAST({x} AS DOUBLE))"
    l0 = f"LEAST(GREATEST(FLOOR(LOG2({a})), -1074), 1023)"
    exp = f"GREATEST({l0} - ({a} < POW(2, {l0})) + ({a} / 2 >= POW(2, {l0})), -1022) - 52"
    return (
        f"CASE WHEN {x} = 0 THEN '0' ELSE CONCAT(IF({x} < 0, '-', ''),"
        f" CAST({a} / POW(2, {exp}) AS UNSIGNED), 'p', {exp}) END"
    )


def _float_pg(x: str) -> str:
    a = f"abs(({x})::float8)"
    l0 = f"least(greatest(floor(ln({a}) / ln(2::float8)), -1074), 1023)"
    low = f"(case when {a} < power(2::float8, {l0}) then 1 else 0 end)"
    # Not a / 2 (PostgreSQL raises on underflow) nor 2^1024 (on overflow).
    high = f"(case when {l0} < 1023 and {a} >= power(2::float8, {l0} + 1) then 1 else 0 end)"
    exp = f"(greatest({l0} - {low} + {high}, -1022) - 52)"
    return (
        f"case when {x} = 0 then '0' else (case when {x} < 0 then '-' else '' end)"
        f" || ({a} / power(2::float8, {exp}))::bigint::text || 'p' || {exp}::bigint::text end"
    )


def _float_sqlite(x: str) -> str:
    a = f"abs(CAST({x} AS REAL))"
    # Not floor(): SQLAlchemy replaces it by a Python function. Truncation is off by at
    # most one too, which the two comparisons correct.
    l0 = f"min(max(CAST(log2({a}) AS INTEGER), -1074), 1023)"
    exp = f"(max({l0} - ({a} < pow(2, {l0})) + ({a} / 2 >= pow(2, {l0})), -1022) - 52)"
    return (
        f"CASE WHEN {x} = 0 THEN '0' ELSE (CASE WHEN {x} < 0 THEN '-' ELSE '' END)"
        f" || CAST(CAST({a} / pow(2, {exp}) AS INTEGER) AS TEXT) || 'p'"
        f" || CAST(CAST({exp} AS INTEGER) AS TEXT) END"
    )


def _trimmed(text: str, dialect: str) -> str:
    """`1.500` -> `1.5`, `2.000` -> `2`; text without a point is left alone."""
    if dialect == "sqlite":
        return (
            f"CASE WHEN instr({text}, '.') > 0 THEN rtrim(rtrim({text}, '0'), '.') ELSE {text} END"
        )
    return (
        f"CASE WHEN INSTR({text}, '.') > 0"
        f" THEN TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM {text})) ELSE {text} END"
    )


def _sqlite_seconds(x: str) -> str:
    """Microseconds of a SQLite time: `HH:MM:SS[.f]` or an epoch-relative datetime."""
    stamp = f"(CASE WHEN {x} LIKE '____-__-__%' THEN {x} ELSE '1970-01-01 ' || {x} END)"
    fraction = f"substr(substr({stamp}, 20) || '0000000', 2, 6)"
    return (
        # Whole seconds only: strftime('%s') rounds a fraction (23:59:59.9999 gives the next).
        f"CAST(CAST(strftime('%s', substr({stamp}, 1, 19)) AS INTEGER) * 1000000"
        f" + CAST({fraction} AS INTEGER) AS TEXT)"
    )


def _fraction_digits(col: SourceColumn) -> int:
    """DATETIME(n)/TIMESTAMP(n): n, the digits of a second MySQL writes in the text."""
    match = re.search(r"\((\d)\)", col.column_type)
    return int(match.group(1)) if match else 0


def _mysql_token(x: str, col: SourceColumn, wkb_only: bool) -> str:
    kind = col.kind
    if kind == "bit":
        return f"{x} + 0"
    if kind in ("integer", "year"):
        return x  # the server's own decimal text
    if kind == "decimal":  # the text has exactly `scale` decimals: trim them to the value's
        return f"TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM {x}))" if col.scale else x
    if kind == "float":
        return _float_mysql(x)
    if kind == "date":
        return x
    if kind == "datetime":  # the text has the column's n digits of a second: pad to 6
        digits = _fraction_digits(col)
        pad = "0" * (6 - digits) if digits else ".000000"
        return f"CONCAT({x}, '{pad}')"
    if kind == "time":
        return f"CAST(TIME_TO_SEC({x}) * 1000000 AS SIGNED)"
    if kind in ("binary", "geometry"):
        value = f"SUBSTRING({x}, 5)" if kind == "geometry" and wkb_only else x
        if always_short(col):
            return f"HEX({value})"
        return f"IF(LENGTH({value}) <= {LONG}, HEX({value}), CONCAT('#', SHA2({value}, 256)))"
    text = f"CONVERT({x} USING utf8mb4)"
    if always_short(col):
        return f"CONCAT(LENGTH({text}), ':', {text})"
    return (
        f"IF(LENGTH({text}) <= {LONG}, CONCAT(LENGTH({text}), ':', {text}),"
        f" CONCAT('#', SHA2({text}, 256)))"
    )


def _pg_token(x: str, col: SourceColumn) -> str:
    kind = col.kind
    if kind in ("integer", "year", "bit"):
        return f"({x})::numeric::text"
    if kind == "decimal":
        return f"trim_scale(({x})::numeric)::text"
    if kind == "float":
        return _float_pg(x)
    if kind == "date":
        return f"to_char({x}, 'YYYY-MM-DD')"
    if kind == "datetime":
        return f"to_char({x}, 'YYYY-MM-DD HH24:MI:SS.US')"
    if kind == "time":
        return f"(extract(epoch from {x}) * 1000000)::numeric(30, 0)::text"
    if kind in ("binary", "geometry"):
        if always_short(col):
            return f"upper(encode({x}, 'hex'))"
        return (
            f"case when octet_length({x}) <= {LONG} then upper(encode({x}, 'hex'))"
            f" else '#' || encode(sha256({x}), 'hex') end"
        )
    text = f"({x})::text"
    if always_short(col):
        return f"octet_length({text})::text || ':' || {text}"
    return (
        f"case when octet_length({text}) <= {LONG} then octet_length({text})::text || ':' || {text}"
        f" else '#' || encode(sha256(convert_to({text}, 'UTF8')), 'hex') end"
    )


def _sqlite_token(x: str, col: SourceColumn) -> str:
    kind = col.kind
    if kind in ("integer", "year", "bit"):
        return f"CAST({x} AS TEXT)"
    if kind == "decimal":
        return _trimmed(f"CAST({x} AS TEXT)", "sqlite")
    if kind == "float":
        return _float_sqlite(x)
    if kind == "date":
        return f"substr({x}, 1, 10)"
    if kind == "datetime":
        text = f"replace({x}, 'T', ' ')"
        return (
            f"CASE WHEN length({text}) = 10 THEN {text} || ' 00:00:00.000000'"
            f" WHEN instr({text}, '.') > 0 THEN substr({text} || '000000', 1, 26)"
            f" ELSE {text} || '.000000' END"
        )
    if kind == "time":
        return _sqlite_seconds(x)
    if kind in ("binary", "geometry"):
        if always_short(col):
            return f"CASE WHEN {x} IS NULL THEN NULL ELSE hex({x}) END"  # hex(NULL) is ''
        return (  # hex(NULL) is '', not NULL
            f"CASE WHEN {x} IS NULL THEN NULL WHEN length(CAST({x} AS BLOB)) <= {LONG}"
            f" THEN hex({x}) ELSE '#' || {SQLITE_SHA256}(CAST({x} AS BLOB)) END"
        )
    # Bytes, not length(): SQLite counts characters only up to the first NUL.
    size = f"length(CAST({x} AS BLOB))"
    if always_short(col):
        return f"{size} || ':' || {x}"
    return (
        f"CASE WHEN {size} <= {LONG} THEN {size} || ':' || {x}"
        f" ELSE '#' || {SQLITE_SHA256}(CAST({x} AS BLOB)) END"
    )


def token_sql(dialect: str, x: str, col: SourceColumn, *, wkb_only: bool) -> str:
    """The SQL of one value's token on `dialect`, for a source column's kind."""
    if dialect in ("mysql", "mariadb"):
        return _mysql_token(x, col, wkb_only)
    if dialect == "postgresql":
        return _pg_token(x, col)
    return _sqlite_token(x, col)
