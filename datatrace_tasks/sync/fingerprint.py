"""Row fingerprints each server computes from its own exact reading of each type.

Verification must not share the copy's code: a value the copy's projection damages
would be damaged the same way in a check that reads through it, and the two would
agree. So nothing here is used by the copy. Each server turns every value into one
token by the rule that is exact for that type on that server (the table below),
joins a row's tokens, and hashes the row; a table sums up as `COUNT(*)`
and the sum mod 2^64 of the first 64 bits of the row hashes (SHA-256), computed by
the server.

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
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine

from datatrace_tasks.sync.catalog import SourceColumn
from datatrace_tasks.sync.rawsql import between_sql, quote

LONG = 1024
"""A text or binary value longer than this many bytes is tokenised by its SHA-256, so a
row's text stays far below a server's packet limit (MySQL makes a longer string
function result NULL: a 9 MB BLOB's hex once read as NULL)."""
SQLITE_SHA256 = "datatrace_sha256"  # registered on each SQLite connection that needs it


def register_sqlite(driver: Any) -> None:
    """Give a sqlite3 connection the SHA-256 that long values are tokenised with."""
    driver.create_function(
        SQLITE_SHA256,
        1,
        lambda data: None if data is None else hashlib.sha256(bytes(data)).hexdigest(),
        deterministic=True,
    )


Aggregate = tuple[int, int]  # (rows, sum mod 2^64 of the first 64 bits of each row's SHA-256)
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
        return f"IF(LENGTH({value}) <= {LONG}, HEX({value}), CONCAT('#', SHA2({value}, 256)))"
    text = f"CONVERT({x} USING utf8mb4)"
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
        return (
            f"case when octet_length({x}) <= {LONG} then upper(encode({x}, 'hex'))"
            f" else '#' || encode(sha256({x}), 'hex') end"
        )
    text = f"({x})::text"
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
        return (  # hex(NULL) is '', not NULL
            f"CASE WHEN {x} IS NULL THEN NULL WHEN length(CAST({x} AS BLOB)) <= {LONG}"
            f" THEN hex({x}) ELSE '#' || {SQLITE_SHA256}(CAST({x} AS BLOB)) END"
        )
    # Bytes, not length(): SQLite counts characters only up to the first NUL.
    size = f"length(CAST({x} AS BLOB))"
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
        """A quoted identifier of this server (`%` doubled where the driver formats)."""
        return quote(self.engine, name)

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
        """The SQL of a row's key text, which places it in a bucket (the whole row's text
        for a table without a key)."""
        if not self.key:
            return self.row_text()
        by_name = {c.name: c for c in self.columns}
        return self._joined([by_name[name] for name in self.key])


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def _bucket(key_text: str, buckets: int) -> int:
    return int.from_bytes(_digest(key_text)[:4], "big") % buckets


class Fingerprint:
    """Aggregates of one side's rows: the whole table, per bucket of keys, or per row.

    A bucket is a hash of the key, not a key range, so the two servers agree on which
    rows it holds whatever collation each sorts text keys in (a table without a key is
    bucketed by whole rows). A row's hash is the first 64 bits of the SHA-256 of its
    text (SHA-256 is faster than MD5 on both servers here, and a sum of a non-linear
    hash cannot be cancelled by a repeated defect the way CRCs can); rows sum up mod
    2^64, not by XOR, so two equal rows count twice: a table without a key is compared
    as a multiset.
    """

    def __init__(self, side: Side) -> None:
        self.side = side
        self.name = side.quote(side.table)
        self.row = side.row_text()
        self.keytext = side.key_text()
        self.keys = [side.quote(name) for name in side.key]

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raw: Any = self.side.engine.raw_connection()
        try:
            cursor = raw.cursor()
            try:
                cursor.execute(sql, list(params))
                return [tuple(r) for r in cursor.fetchall()]
            finally:
                cursor.close()
                raw.rollback()
        finally:
            raw.close()

    def _hash64(self, expr: str) -> str:
        """The SQL of a text's hash as a 64-bit integer (signed on PostgreSQL)."""
        if self.side.dialect == "postgresql":
            digest = f"substring(sha256(convert_to({expr}, 'UTF8')) from 1 for 8)"
            return f"('x' || encode({digest}, 'hex'))::bit(64)::bigint"
        return f"CAST(CONV(LEFT(SHA2({expr}, 256), 16), 16, 10) AS UNSIGNED)"

    def _bucket_sql(self, buckets: int) -> str:
        if self.side.dialect == "postgresql":
            digest = f"substring(sha256(convert_to({self.keytext}, 'UTF8')) from 1 for 4)"
            return f"mod(('x' || encode({digest}, 'hex'))::bit(32)::bigint, {buckets})"
        return f"MOD(CONV(LEFT(SHA2({self.keytext}, 256), 8), 16, 10), {buckets})"

    def _pairs(self) -> Iterator[tuple[str, str]]:
        """SQLite: (key text, row text) of every row, streamed (the hash is taken here)."""
        raw: Any = self.side.engine.raw_connection()
        try:
            register_sqlite(raw.driver_connection)
            cursor = raw.cursor()
            cursor.execute(f"SELECT {self.keytext}, {self.row} FROM {self.name}")  # noqa: S608
            while chunk := cursor.fetchmany(10_000):
                yield from chunk
        finally:
            raw.close()

    def _cuts(self, parts: int, rows: int) -> list[Any]:
        """Keys that cut this side's table into `parts` ranges of about `rows / parts`."""
        keys = ", ".join(self.keys)
        cuts = []
        for i in range(1, parts):
            found = self._query(
                f"SELECT {keys} FROM {self.name} ORDER BY {keys}"  # noqa: S608
                f" LIMIT 1 OFFSET {rows * i // parts}"
            )
            if not found:
                break
            cuts.append(found[0])
        return cuts

    def _range_total(self, lo: Any, hi: Any) -> Aggregate:
        where, params = between_sql(self.keys, lo, hi)
        hashed = self._hash64(self.row)
        ((count, total),) = self._query(
            f"SELECT COUNT(*), SUM({hashed}) FROM {self.name}{where}",  # noqa: S608
            params,
        )
        return int(count), int(total or 0) & MASK64

    def total(self, *, parts: int = 1, rows: int = 0) -> Aggregate:
        """(rows, sum) of the whole table, from the server's own scan.

        With `parts` > 1 the server scans that many key ranges at once (`rows` is an
        estimate of the table's size, for the cuts). Each side cuts its own table in
        its own key order: a sum does not care which rows were added together.
        """
        if self.side.dialect == "sqlite":
            count = total = 0
            for _, text in self._pairs():
                count += 1
                total += int.from_bytes(_digest(text)[:8], "big")
            return count, total & MASK64
        cut = parts > 1 and bool(self.keys)  # no key, no ranges: one scan
        bounds = [None, *self._cuts(parts, rows), None] if cut else [None, None]
        spans = list(zip(bounds, bounds[1:], strict=False))
        with ThreadPoolExecutor(max_workers=len(spans)) as pool:
            sums = list(pool.map(lambda span: self._range_total(*span), spans))
        return sum(n for n, _ in sums), sum(part for _, part in sums) & MASK64

    def buckets(self, buckets: int) -> dict[int, Aggregate]:
        """(rows, sum) per bucket of keys."""
        if self.side.dialect == "sqlite":
            out: dict[int, list[int]] = {}
            for key, text in self._pairs():
                agg = out.setdefault(_bucket(key, buckets), [0, 0])
                agg[0] += 1
                agg[1] += int.from_bytes(_digest(text)[:8], "big")
            return {b: (n, x & MASK64) for b, (n, x) in out.items()}
        bucket, hashed = self._bucket_sql(buckets), self._hash64(self.row)
        found = self._query(
            f"SELECT {bucket}, COUNT(*), SUM({hashed}) FROM {self.name} GROUP BY 1"  # noqa: S608
        )
        return {int(b): (int(n), int(x or 0) & MASK64) for b, n, x in found}

    def rows(self, buckets: int, chosen: set[int]) -> dict[str, int]:
        """Row hash by key text, for the rows in the `chosen` buckets."""
        if self.side.dialect == "sqlite":
            return {
                key: int.from_bytes(_digest(text)[:8], "big")
                for key, text in self._pairs()
                if _bucket(key, buckets) in chosen
            }
        picked = ", ".join(str(b) for b in sorted(chosen))
        hashed = self._hash64(self.row)
        found = self._query(
            f"SELECT {self.keytext}, {hashed} FROM {self.name}"  # noqa: S608
            f" WHERE {self._bucket_sql(buckets)} IN ({picked})"
        )
        return {str(k): int(h) & MASK64 for k, h in found}

    def key_values(self, buckets: int, chosen: set[int], texts: set[str]) -> list[tuple[Any, ...]]:
        """The stored key values of the rows whose key texts are `texts` (in `chosen`)."""
        keys = ", ".join(self.keys)
        if self.side.dialect == "sqlite":
            raw: Any = self.side.engine.raw_connection()
            try:
                register_sqlite(raw.driver_connection)
                found = raw.execute(f"SELECT {keys}, {self.keytext} FROM {self.name}").fetchall()  # noqa: S608
            finally:
                raw.close()
        else:
            picked = ", ".join(str(b) for b in sorted(chosen))
            found = self._query(
                f"SELECT {keys}, {self.keytext} FROM {self.name}"  # noqa: S608
                f" WHERE {self._bucket_sql(buckets)} IN ({picked})"
            )
        return [tuple(row[:-1]) for row in found if str(row[-1]) in texts]

    def row_counts(self, buckets: int, chosen: set[int]) -> Counter[str]:
        """How often each row text occurs in the `chosen` buckets (a table without a key)."""
        if self.side.dialect == "sqlite":
            return Counter(t for _, t in self._pairs() if _bucket(t, buckets) in chosen)
        picked = ", ".join(str(b) for b in sorted(chosen))
        found = self._query(
            f"SELECT {self.row}, COUNT(*) FROM {self.name}"  # noqa: S608
            f" WHERE {self._bucket_sql(buckets)} IN ({picked}) GROUP BY 1"
        )
        return Counter({str(text): int(n) for text, n in found})
