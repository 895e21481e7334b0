"""Row fingerprints each server computes from its own exact reading of each type.

Verification must not share the copy's code: a value the copy's projection damages
would be damaged the same way in a check that reads through it, and the two would
agree. So nothing here is used by the copy. Each server turns every value into one
token by the rule that is exact for that type on that server (`tokens.py`),
joins a row's tokens, and hashes the row; a table sums up as `COUNT(*)`
and the XOR (without a key: the sum mod 2^64) of the first 64 bits of the row
hashes (SHA-256), computed by the server.

"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine

from datatrace_tasks.sync.catalog import SourceColumn
from datatrace_tasks.sync.rawsql import between_sql, quote, source_rows
from datatrace_tasks.sync.tokens import register_sqlite, token_sql

Aggregate = tuple[int, int]  # (rows, sum mod 2^64 of the first 64 bits of each row's SHA-256)
MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class Scope:
    """Only the rows whose `column` is at least `low`: the slice an incremental run wrote."""

    column: SourceColumn
    low: Any  # an int, or a date or datetime


@dataclass(frozen=True)
class Side:
    """One table on one server: where it is, and how its rows are read."""

    engine: Engine
    table: str
    columns: Sequence[SourceColumn]
    key: Sequence[str]
    wkb_only: bool  # geometry compared as WKB (SRID dropped): a copy between unlike servers
    scope: Scope | None = None  # None: every row
    row_filter: str | None = None  # the job's `where` for the table, on the source side

    @property
    def dialect(self) -> str:
        """The server's dialect name."""
        return self.engine.dialect.name

    def quote(self, name: str) -> str:
        """A quoted identifier of this server (`%` doubled where the driver formats)."""
        return quote(self.engine, name)

    def scope_sql(self, mark: str) -> tuple[str, list[Any]]:
        """The scope's condition (empty: every row) and its parameter, `mark` its placeholder.

        MySQL and PostgreSQL compare the column with a typed parameter (exact to the
        microsecond, and it can use an index on the cursor). SQLite, which keeps a date
        or datetime as text of more than one form, compares its token, whose fixed-width
        text sorts in time order, so both sides pick the same rows.
        """
        if self.scope is None:
            return "", []
        col, low = self.scope.column, self.scope.low
        if col.kind == "integer":
            return f"{self.quote(col.name)} >= {mark}", [int(low)]
        if self.dialect != "sqlite":
            return f"{self.quote(col.name)} >= {mark}", [low]
        token = token_sql(self.dialect, self.quote(col.name), col, wkb_only=self.wkb_only)
        if col.kind == "datetime":
            return f"{token} >= {mark}", [low.isoformat(sep=" ", timespec="microseconds")]
        return f"{token} >= {mark}", [low.isoformat()]

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


@dataclass(frozen=True)
class KeyRanges:
    """Buckets that are ranges of a one-column integer key: bucket b holds the keys
    `b * width` to `(b + 1) * width - 1`. Both servers agree on them without hashing a
    key, and the rows of a bucket come by a range of the key's index, not a scan."""

    width: int


MAX_KEY_SPANS = 64
"""Key ranges of differing buckets read as one OR of ranges at most; past that, a scan
that tests each row's bucket number (PostgreSQL plans thousands of ORs very badly)."""

Buckets = int | KeyRanges
"""How rows are spread over buckets: an int is that many buckets by a hash of the key."""


def _bucket(key_text: str, buckets: Buckets) -> int:
    if isinstance(buckets, KeyRanges):
        return int(key_text) // buckets.width  # floor, as FLOOR() on the servers
    return int.from_bytes(_digest(key_text)[:4], "big") % buckets


class Fingerprint:
    """Aggregates of one side's rows: the whole table, per bucket of keys, or per row.

    A bucket is a hash of the key, not a key range, so the two servers agree on which
    rows it holds whatever collation each sorts text keys in (a table without a key is
    bucketed by whole rows). A row's hash is the first 64 bits of the SHA-256 of its
    text (SHA-256 is faster than MD5 on both servers here, and XOR or sum of a
    non-linear hash cannot be cancelled by a repeated defect the way CRCs can). Rows
    with a key combine by XOR; rows without one sum up mod 2^64, so that two equal
    rows count twice: such a table is compared as a multiset.
    """

    def __init__(self, side: Side) -> None:
        self.side = side
        self.name = source_rows(side.engine, side.table, side.row_filter)
        self.row = side.row_text()
        self.keytext = side.key_text()
        self.keys = [side.quote(name) for name in side.key]
        # With a key no two rows are equal, and XOR is the cheaper server aggregate (MySQL
        # sums BIGINTs as DECIMAL); without one, equal rows must count: a sum mod 2^64.
        self.multiset = not side.key
        self.combine = "SUM" if self.multiset else "BIT_XOR"
        self.scope, self.scope_params = side.scope_sql("?" if side.dialect == "sqlite" else "%s")
        # Key values of the rows `rows` last read, by key text (None: not read by it).
        self.key_values_read: dict[str, tuple[Any, ...]] | None = None

    def _scoped(self, where: str = "", params: Sequence[Any] = ()) -> tuple[str, list[Any]]:
        """`where` (a ` WHERE ...` clause or empty) narrowed to the side's scope."""
        if not self.scope:
            return where, list(params)
        if where:
            return f"{where} AND ({self.scope})", [*params, *self.scope_params]
        return f" WHERE {self.scope}", list(self.scope_params)

    def _add(self, total: int, part: int) -> int:
        """Combine two aggregates the way the servers do."""
        return total + part if self.multiset else total ^ (part & MASK64)

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

    def _bucket_sql(self, buckets: Buckets) -> str:
        if isinstance(buckets, KeyRanges):
            # Integer division, exact at any size (MySQL's `/` rounds to 4 decimals),
            # made a floor for negative keys: bucket b is the keys b*w .. (b+1)*w - 1.
            key, w = self.keys[0], buckets.width
            if self.side.dialect == "postgresql":
                return f"(div(({key})::numeric, {w}) - (mod({key}, {w}) < 0)::int)"
            return f"(({key}) DIV {w} - (MOD({key}, {w}) < 0))"
        if self.side.dialect == "postgresql":
            digest = f"substring(sha256(convert_to({self.keytext}, 'UTF8')) from 1 for 4)"
            return f"mod(('x' || encode({digest}, 'hex'))::bit(32)::bigint, {buckets})"
        return f"MOD(CONV(LEFT(SHA2({self.keytext}, 256), 8), 16, 10), {buckets})"

    def _in_buckets(self, buckets: Buckets, chosen: set[int]) -> str:
        """` WHERE` a row is in one of the `chosen` buckets: as ranges of the key for
        `KeyRanges` (adjacent buckets merged), else by the bucket's hash."""
        picked = sorted(chosen)
        if not picked:
            return " WHERE 1 = 0"
        listed = f" WHERE {self._bucket_sql(buckets)} IN ({', '.join(map(str, picked))})"
        if not isinstance(buckets, KeyRanges):
            return listed
        runs: list[list[int]] = []
        for b in picked:
            if runs and b == runs[-1][1] + 1:
                runs[-1][1] = b
            else:
                runs.append([b, b])
        if len(runs) > MAX_KEY_SPANS:  # a scan with a cheap bucket test beats that many ORs
            return listed
        w, key = buckets.width, self.keys[0]
        spans = " OR ".join(f"{key} BETWEEN {lo * w} AND {(hi + 1) * w - 1}" for lo, hi in runs)
        return f" WHERE ({spans})"

    def _pairs(self) -> Iterator[tuple[str, str]]:
        """SQLite: (key text, row text) of every row, streamed (the hash is taken here)."""
        raw: Any = self.side.engine.raw_connection()
        try:
            register_sqlite(raw.driver_connection)
            cursor = raw.cursor()
            where, params = self._scoped()
            cursor.execute(f"SELECT {self.keytext}, {self.row} FROM {self.name}{where}", params)  # noqa: S608
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
        where, params = self._scoped(*between_sql(self.keys, lo, hi))
        hashed = self._hash64(self.row)
        ((count, total),) = self._query(
            f"SELECT COUNT(*), {self.combine}({hashed}) FROM {self.name}{where}",  # noqa: S608
            params,
        )
        return int(count), int(total or 0) & MASK64

    def total(self, *, parts: int = 1, rows: int = 0) -> Aggregate:
        """(rows, sum) of the whole table, from the server's own scan.

        With `parts` > 1 the server scans that many key ranges at once (`rows` is an
        estimate of the table's size, for the cuts). Each side cuts its own table in
        its own key order: XOR (or a sum) does not care which rows were combined.
        """
        if self.side.dialect == "sqlite":
            count = total = 0
            for _, text in self._pairs():
                count += 1
                total = self._add(total, int.from_bytes(_digest(text)[:8], "big"))
            return count, total & MASK64
        cut = parts > 1 and bool(self.keys)  # no key, no ranges: one scan
        bounds = [None, *self._cuts(parts, rows), None] if cut else [None, None]
        spans = list(zip(bounds, bounds[1:], strict=False))
        with ThreadPoolExecutor(max_workers=len(spans)) as pool:
            sums = list(pool.map(lambda span: self._range_total(*span), spans))
        total = 0
        for _, part in sums:
            total = self._add(total, part)
        return sum(n for n, _ in sums), total & MASK64

    def buckets(self, buckets: Buckets, only: set[int] | None = None) -> dict[int, Aggregate]:
        """(rows, sum) per bucket of keys (of the buckets `only`, if given)."""
        if self.side.dialect == "sqlite":
            out: dict[int, list[int]] = {}
            for key, text in self._pairs():
                b = _bucket(key, buckets)
                if only is not None and b not in only:
                    continue
                agg = out.setdefault(b, [0, 0])
                agg[0] += 1
                agg[1] = self._add(agg[1], int.from_bytes(_digest(text)[:8], "big"))
            return {b: (n, x & MASK64) for b, (n, x) in out.items()}
        bucket, hashed = self._bucket_sql(buckets), self._hash64(self.row)
        where, params = self._scoped("" if only is None else self._in_buckets(buckets, only))
        found = self._query(
            f"SELECT {bucket}, COUNT(*), {self.combine}({hashed})"  # noqa: S608
            f" FROM {self.name}{where} GROUP BY 1",
            params,
        )
        return {int(b): (int(n), int(x or 0) & MASK64) for b, n, x in found}

    def rows(self, buckets: Buckets, chosen: set[int]) -> dict[str, int]:
        """Row hash by key text, for the rows in the `chosen` buckets (their stored key
        values are kept in `key_values_read`, for a repair to use without a second scan)."""
        if self.side.dialect == "sqlite":
            self.key_values_read = None
            return {
                key: int.from_bytes(_digest(text)[:8], "big")
                for key, text in self._pairs()
                if _bucket(key, buckets) in chosen
            }
        hashed, keys = self._hash64(self.row), ", ".join(self.keys)
        where, params = self._scoped(self._in_buckets(buckets, chosen))
        found = self._query(
            f"SELECT {self.keytext}, {hashed}, {keys} FROM {self.name}{where}",  # noqa: S608
            params,
        )
        self.key_values_read = {str(row[0]): tuple(row[2:]) for row in found}
        return {str(row[0]): int(row[1]) & MASK64 for row in found}

    def key_values(
        self, buckets: Buckets, chosen: set[int], texts: set[str]
    ) -> list[tuple[Any, ...]]:
        """The stored key values of the rows whose key texts are `texts` (in `chosen`)."""
        keys = ", ".join(self.keys)
        if self.side.dialect == "sqlite":
            raw: Any = self.side.engine.raw_connection()
            try:
                register_sqlite(raw.driver_connection)
                where, params = self._scoped()
                sql = f"SELECT {keys}, {self.keytext} FROM {self.name}{where}"  # noqa: S608
                found = raw.execute(sql, params).fetchall()
            finally:
                raw.close()
        else:
            where, params = self._scoped(self._in_buckets(buckets, chosen))
            found = self._query(
                f"SELECT {keys}, {self.keytext} FROM {self.name}{where}",  # noqa: S608
                params,
            )
        return [tuple(row[:-1]) for row in found if str(row[-1]) in texts]

    def row_counts(self, buckets: Buckets, chosen: set[int]) -> Counter[str]:
        """How often each row text occurs in the `chosen` buckets (a table without a key)."""
        if self.side.dialect == "sqlite":
            return Counter(t for _, t in self._pairs() if _bucket(t, buckets) in chosen)
        where, params = self._scoped(self._in_buckets(buckets, chosen))
        found = self._query(
            f"SELECT {self.row}, COUNT(*) FROM {self.name}{where} GROUP BY 1",  # noqa: S608
            params,
        )
        return Counter({str(text): int(n) for text, n in found})
