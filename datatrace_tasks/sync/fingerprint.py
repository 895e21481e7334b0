"""Row fingerprints each server computes from its own exact reading of each type.

Verification must not share the copy's code: a value the copy's projection damages
would be damaged the same way in a check that reads through it, and the two would
agree. So nothing here is used by the copy. Each server turns every value into one
token by the rule that is exact for that type on that server (the table below),
joins a row's tokens, and hashes the row with MD5; a table sums up as `COUNT(*)`
and the XOR of the first 64 bits of the row hashes, computed by the server.

| kind | token | MySQL reads it as | PostgreSQL | SQLite |
|---|---|---|---|---|
| integer, year, bit | decimal digits | `x + 0` | `x::text` | `CAST(x AS TEXT)` |
| decimal | digits, no trailing zeros | its text, trimmed | `trim_scale(x)` | its text, trimmed |
| float | `[-]M p E`, x = M * 2^E exactly | `CAST(x AS DOUBLE)` | `float8` | `REAL` |
| date | `YYYY-MM-DD` | `DATE_FORMAT` | `to_char` | its text |
| datetime | `YYYY-MM-DD HH:MM:SS.ffffff` | `DATE_FORMAT(%f)` | `to_char(.US)` | its text, padded |
| time | signed microseconds | `TIME_TO_SEC` | `extract(epoch)` | seconds of its text |
| text kinds | `characters:text` | `CONVERT(x USING utf8mb4)` | `x::text` | `x` |
| binary | upper-case hex of every byte | `HEX(x)` | `encode(x, 'hex')` | `hex(x)` |
| geometry | hex of the WKB (with SRID MySQL to MySQL) | bytes after the SRID | bytea | blob |

A float's token is its binary mantissa and exponent, found with `LOG2` and powers of
two (both exact operations on a double): the servers' shortest decimal texts have
the same digits but not the same layout (`1e20` against `1e+20`, `0.00001` against
`1e-05`). NULL is `N`, which no token can be (text tokens start with a length).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine

from datatrace_tasks.sync.catalog import SourceColumn

Aggregate = tuple[int, int]  # (rows, xor of the first 64 bits of each row's MD5)
MASK64 = (1 << 64) - 1


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


def _mysql_token(x: str, col: SourceColumn, wkb_only: bool) -> str:
    kind = col.kind
    if kind in ("integer", "year", "bit"):
        return f"{x} + 0"
    if kind == "decimal":
        return _trimmed(f"CAST({x} AS CHAR)", "mysql") if col.scale else f"CAST({x} AS CHAR)"
    if kind == "float":
        return _float_mysql(x)
    if kind == "date":
        return f"DATE_FORMAT({x}, '%Y-%m-%d')"
    if kind == "datetime":
        return f"DATE_FORMAT({x}, '%Y-%m-%d %H:%i:%s.%f')"
    if kind == "time":
        return f"CAST(TIME_TO_SEC({x}) * 1000000 AS SIGNED)"
    if kind == "binary":
        return f"HEX({x})"
    if kind == "geometry":
        return f"HEX(SUBSTRING({x}, 5))" if wkb_only else f"HEX({x})"
    text = f"CONVERT({x} USING utf8mb4)"
    return f"CONCAT(CHAR_LENGTH({text}), ':', {text})"


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
        return f"upper(encode({x}, 'hex'))"
    return f"length(({x})::text)::text || ':' || ({x})::text"


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
        return f"CASE WHEN {x} IS NULL THEN NULL ELSE hex({x}) END"  # hex(NULL) is ''
    return f"length({x}) || ':' || {x}"


def token_sql(dialect: str, x: str, col: SourceColumn, *, wkb_only: bool) -> str:
    """The SQL of one value's token on `dialect`, for a source column's kind."""
    if dialect in ("mysql", "mariadb"):
        return _mysql_token(x, col, wkb_only)
    if dialect == "postgresql":
        return _pg_token(x, col)
    return _sqlite_token(x, col)


@dataclass(frozen=True)
class Side:
    """One table on one server: where it is, and how its rows are read."""

    engine: Engine
    table: str
    columns: Sequence[SourceColumn]
    key: Sequence[str]
    wkb_only: bool  # geometry compared as WKB (SRID dropped): a copy between unlike servers

    @property
    def dialect(self) -> str:
        """The server's dialect name."""
        return self.engine.dialect.name

    def quote(self, name: str) -> str:
        """A quoted identifier of this server."""
        return str(self.engine.dialect.identifier_preparer.quote(name))

    def _joined(self, columns: Sequence[SourceColumn]) -> str:
        tokens = []
        for col in columns:
            token = token_sql(self.dialect, self.quote(col.name), col, wkb_only=self.wkb_only)
            tokens.append(f"COALESCE({token}, 'N')")
        if self.dialect == "sqlite":
            return " || ',' || ".join(tokens)
        return f"CONCAT_WS(',', {', '.join(tokens)})"

    def row_text(self) -> str:
        """The SQL of a row's text: every column's token, comma-separated."""
        return self._joined(self.columns)

    def key_text(self) -> str:
        """The SQL of a row's key text, which places it in a bucket."""
        by_name = {c.name: c for c in self.columns}
        return self._joined([by_name[name] for name in self.key])


def _md5_64(text: str) -> int:
    return int(hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()[:16], 16)


def _bucket(key_text: str, buckets: int) -> int:
    digest = hashlib.md5(key_text.encode(), usedforsecurity=False).hexdigest()[:8]
    return int(digest, 16) % buckets


class Fingerprint:
    """Aggregates of one side's rows: the whole table, per bucket of keys, or per row.

    A bucket is a hash of the key, not a key range, so the two servers agree on which
    rows it holds whatever collation each sorts text keys in.
    """

    def __init__(self, side: Side) -> None:
        self.side = side
        self.name = side.quote(side.table)
        self.row = side.row_text()
        self.keytext = side.key_text()

    def _query(self, sql: str) -> list[tuple[Any, ...]]:
        raw: Any = self.side.engine.raw_connection()
        try:
            cursor = raw.cursor()
            try:
                cursor.execute(sql)
                return [tuple(r) for r in cursor.fetchall()]
            finally:
                cursor.close()
                raw.rollback()
        finally:
            raw.close()

    def _hash64(self, expr: str) -> str:
        if self.side.dialect == "postgresql":
            return f"('x' || left(md5({expr}), 16))::bit(64)::bigint"
        return f"CAST(CONV(LEFT(MD5({expr}), 16), 16, 10) AS UNSIGNED)"

    def _bucket_sql(self, buckets: int) -> str:
        if self.side.dialect == "postgresql":
            return f"((('x' || left(md5({self.keytext}), 8))::bit(32)::bigint) % {buckets})"
        return f"(CONV(LEFT(MD5({self.keytext}), 8), 16, 10) % {buckets})"

    def _pairs(self) -> Iterator[tuple[str, str]]:
        """SQLite: (key text, row text) of every row, streamed (the hash is taken here)."""
        raw: Any = self.side.engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute(f"SELECT {self.keytext}, {self.row} FROM {self.name}")  # noqa: S608
            while chunk := cursor.fetchmany(10_000):
                yield from chunk
        finally:
            raw.close()

    def total(self) -> Aggregate:
        """(rows, xor) of the whole table, in one scan by the server."""
        if self.side.dialect == "sqlite":
            rows = xor = 0
            for _, text in self._pairs():
                rows += 1
                xor ^= _md5_64(text)
            return rows, xor
        hashed = self._hash64(self.row)
        ((count, xor),) = self._query(f"SELECT COUNT(*), BIT_XOR({hashed}) FROM {self.name}")  # noqa: S608
        return int(count), int(xor or 0) & MASK64

    def buckets(self, buckets: int) -> dict[int, Aggregate]:
        """(rows, xor) per bucket of keys."""
        if self.side.dialect == "sqlite":
            out: dict[int, list[int]] = {}
            for key, text in self._pairs():
                agg = out.setdefault(_bucket(key, buckets), [0, 0])
                agg[0] += 1
                agg[1] ^= _md5_64(text)
            return {b: (n, x) for b, (n, x) in out.items()}
        bucket, hashed = self._bucket_sql(buckets), self._hash64(self.row)
        found = self._query(
            f"SELECT {bucket}, COUNT(*), BIT_XOR({hashed}) FROM {self.name} GROUP BY 1"  # noqa: S608
        )
        return {int(b): (int(n), int(x or 0) & MASK64) for b, n, x in found}

    def rows(self, buckets: int, chosen: set[int]) -> dict[str, str]:
        """Row hash by key text, for the rows in the `chosen` buckets."""
        if self.side.dialect == "sqlite":
            return {
                key: hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()
                for key, text in self._pairs()
                if _bucket(key, buckets) in chosen
            }
        picked = ", ".join(str(b) for b in sorted(chosen))
        found = self._query(
            f"SELECT {self.keytext}, MD5({self.row}) FROM {self.name}"  # noqa: S608
            f" WHERE {self._bucket_sql(buckets)} IN ({picked})"
        )
        return {str(k): str(h) for k, h in found}
