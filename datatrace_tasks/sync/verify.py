"""Proof that a target table holds the source rows, by a check that shares no code
with the copy.

Each server fingerprints its own table (`fingerprint.py`): it reads every value the
way that is exact for its type there, hashes each row, and returns `COUNT(*)` and
the XOR of the row hashes (a sum, for a table without a key). The copy reads
through its own projection and writes through converters and bulk text; none of
that is used here, so a defect on the copy path shows up as a difference instead
of being repeated on both sides. Equal aggregates end the check after one scan per
side (the two run at once). Unequal ones are narrowed to buckets of keys, and the
rows of the differing buckets are compared by key, so a failure names the rows
that differ.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.engine import Engine

from datatrace_tasks.exceptions import DataTraceError, VerificationFailed
from datatrace_tasks.sync.catalog import SourceTable, resolve_tables
from datatrace_tasks.sync.ddl import TargetTable, target_table
from datatrace_tasks.sync.engines import Databases, is_mysql
from datatrace_tasks.sync.fingerprint import Aggregate, Buckets, Fingerprint, Scope, Side
from datatrace_tasks.sync.job import Job
from datatrace_tasks.sync.tablesettings import job_tables, narrowed

VerificationResult = dict[str, Any]
T = TypeVar("T")

BUCKETS = 256
"""Buckets of keys a differing table is narrowed to (a bucket's rows are then compared
by key)."""

_SHOWN = 3  # differing keys named in a failure
PARALLEL_ROWS = 200_000  # above this (estimated) size each server scans two ranges at once


def _both(ours: Callable[[], T], theirs: Callable[[], T]) -> tuple[T, T]:
    """Run the source's and the target's query at once."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="datatrace-verify") as pool:
        future = pool.submit(theirs)
        return ours(), future.result()


def show_key(table: SourceTable, text: str) -> str:
    """A key text (`3:abc,42`) as the values it stands for: `('abc', 42)`; a row of a
    table without a key as its text, cut short."""
    if not table.key:
        return repr(text if len(text) <= 60 else text[:57] + "...")
    values: list[str] = []
    rest = text.encode()
    for name in table.key:
        if table.column(name).kind in ("string", "enum", "set", "other") and b":" in rest:
            size, _, rest = rest.partition(b":")  # a text token: its UTF-8 length, ':', itself
            value, rest = rest[: int(size)], rest[int(size) + 1 :]
            values.append(repr(value.decode(errors="replace")))
        else:
            value, _, rest = rest.partition(b",")
            values.append(value.decode())
    inner = ", ".join(values)
    return inner if len(values) == 1 else f"({inner})"


@dataclass(frozen=True)
class Differences:
    """The rows two sides disagree on: key texts within the differing key buckets."""

    buckets: frozenset[int]
    source_keys: tuple[str, ...]  # changed on the target, or missing there
    extra_keys: tuple[str, ...]  # only on the target
    message: str
    bucket_count: Buckets = BUCKETS  # how the keys were spread over buckets
    source_rows: int = 0  # COUNT(*) of the source, summed over the buckets
    source_total: int = 0  # the XOR of the source's row hashes, over the buckets
    target_rows: int = 0
    chosen_source: Mapping[int, Aggregate] = field(default_factory=dict)  # differing buckets
    # The stored key values of `source_keys` and `extra_keys`, as the comparison read
    # them (None: not read; a repair looks them up).
    source_values: tuple[tuple[Any, ...], ...] | None = None
    extra_values: tuple[tuple[Any, ...], ...] | None = None

    @property
    def found(self) -> bool:
        """Whether any row must change on the target."""
        return bool(self.source_keys or self.extra_keys)


def differences(
    table: SourceTable,
    src: Fingerprint,
    dst: Fingerprint,
    *,
    allow_extra_rows: bool,
    buckets: Buckets = BUCKETS,
    only: frozenset[int] | None = None,
) -> Differences:
    """What differs, found bucket by bucket (`found` is false when nothing, or only
    allowed extra rows, does); `only`: compare those buckets and no others."""
    picked = None if only is None else set(only)
    ours, theirs = _both(lambda: src.buckets(buckets, picked), lambda: dst.buckets(buckets, picked))
    source_rows = sum(n for n, _ in ours.values())
    sums: dict[str, Any] = {
        "source_rows": source_rows,
        "source_total": xor_of(ours.values()),
        "target_rows": sum(n for n, _ in theirs.values()),
    }
    chosen = {b for b in set(ours) | set(theirs) if ours.get(b) != theirs.get(b)}
    sums["chosen_source"] = {b: ours[b] for b in chosen if b in ours}
    if not chosen:
        return Differences(frozenset(), (), (), "", buckets, **sums)
    if table.key:
        mine, yours = _both(lambda: src.rows(buckets, chosen), lambda: dst.rows(buckets, chosen))
        missing = sorted(k for k in mine if k not in yours)
        changed = sorted(k for k in mine if k in yours and mine[k] != yours[k])
        extra = sorted(k for k in yours if k not in mine)
    else:  # a multiset of whole rows: each copy of a row counts
        ours_rows, theirs_rows = _both(
            lambda: src.row_counts(buckets, chosen), lambda: dst.row_counts(buckets, chosen)
        )
        missing = sorted((ours_rows - theirs_rows).elements())
        extra = sorted((theirs_rows - ours_rows).elements())
        changed = []
    if not missing and not changed and (allow_extra_rows or not extra):
        return Differences(frozenset(chosen), (), (), "", buckets, **sums)
    message = _message(table, changed, missing, extra, source_rows, sums["target_rows"])
    wanted, unwanted = changed + missing, [] if allow_extra_rows else extra
    return Differences(
        frozenset(chosen),
        tuple(wanted),
        tuple(unwanted),
        message,
        buckets,
        **sums,
        source_values=_values(src, wanted),
        extra_values=_values(dst, unwanted),
    )


def _message(
    table: SourceTable,
    changed: list[str],
    missing: list[str],
    extra: list[str],
    source_rows: int,
    target_rows: int,
) -> str:
    """What a failure says: the counts if they differ, and the first keys of each kind."""
    parts = []
    for label, keys in (
        ("differ", changed),
        ("are missing on the target", missing),
        ("are only on the target", extra),
    ):
        if keys:
            named = ", ".join(show_key(table, k) for k in keys[:_SHOWN])
            more = f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else ""
            parts.append(f"{len(keys)} row(s) {label}: key {named}{more}")
    if source_rows != target_rows:
        parts.insert(0, f"row counts differ, source {source_rows}, target {target_rows}")
    columns = ", ".join(table.key) or "none: whole rows compared"
    landing = "" if table.target_name is None else f" -> target table {table.target!r}"
    return f"table {table.name!r}{landing} (key {columns}): " + "; ".join(parts)


def xor_of(aggregates: Iterable[Aggregate]) -> int:
    """The XOR of the aggregates' row-hash sums (a keyed table's total over its buckets)."""
    total = 0
    for _, part in aggregates:
        total ^= part
    return total


def _values(side: Fingerprint, texts: list[str]) -> tuple[tuple[Any, ...], ...] | None:
    """The stored key values `side.rows` read for these key texts (None: it kept none)."""
    seen = side.key_values_read
    return None if seen is None else tuple(seen[text] for text in texts)


def wkb_only(source: Engine, target: Engine) -> bool:
    """GEOMETRY is compared as WKB (the SRID dropped) unless both sides are MySQL."""
    return not (is_mysql(source) and is_mysql(target))


def table_checksum(rows: int, total: int) -> str:
    """The recorded checksum of a table: its source rows and their fingerprints."""
    return hashlib.sha256(f"sha256-64:{rows}:{total:016x}".encode()).hexdigest()


def verify_table(
    source: Engine,
    target: Engine,
    table: SourceTable,
    spec: TargetTable,
    *,
    allow_extra_rows: bool = False,
    scope: Scope | None = None,
) -> VerificationResult:
    """Compare one table on both sides; returns the servers' counts and the checksum.

    The recorded checksum depends only on the source, so it is the same whichever
    target was verified. `allow_extra_rows` is for append mode, where the target may
    hold rows of its own. `scope` narrows both sides to the rows an incremental run
    copied (`cursor >= low`, each server reading the cursor its own exact way).

    Raises:
        VerificationFailed: a row differs, is missing or (unless allowed) is extra; the
            message names the keys.
    """
    flat = wkb_only(source, target)
    src = Fingerprint(
        Side(source, table.name, table.columns, table.key, flat, scope, table.row_filter)
    )
    dst = Fingerprint(Side(target, spec.table.name, table.columns, table.key, flat, scope))
    # A big table is scanned as two key ranges at once on each server (2 cores here).
    # Not a window: cutting it would read the whole key order to find the middle.
    parts = 2 if table.estimated_rows > PARALLEL_ROWS and scope is None else 1
    size = table.estimated_rows
    (rows, total), (target_rows, target_total) = _both(
        lambda: src.total(parts=parts, rows=size), lambda: dst.total(parts=parts, rows=size)
    )
    rechecked = False
    if (rows, total) != (target_rows, target_total):
        rechecked = True
        problem = differences(table, src, dst, allow_extra_rows=allow_extra_rows)
        if problem.found:
            raise VerificationFailed(problem.message, problem)
    window = {} if scope is None else {"scope": f"{scope.column.name} >= {scope.low}"}
    return verified(table, rows, target_rows, total, rechecked=rechecked, **window)


def verified(
    table: SourceTable,
    rows: int,
    target_rows: int,
    total: int,
    *,
    method: str = "server fingerprints",
    **more: Any,
) -> VerificationResult:
    """The record of a table that verified: both servers' counts and the source's checksum."""
    return {
        "table": table.name,
        "ok": True,
        "source_rows": rows,
        "target_rows": target_rows,
        "method": method,
        "key": list(table.key),
        **more,
        "checksum": table_checksum(rows, total),
        "verified_at": dt.datetime.now(dt.UTC).isoformat(),
    }


def verify_job(job: Job, tables: Sequence[str] | None = None) -> dict[str, VerificationResult]:
    """Re-check the target against the source for `tables` (default: the job's tables).

    A table that fails is reported with `ok: False` and an `error`, so one bad table
    does not hide the others.

    Raises:
        DatabaseUnreachable: a database cannot be reached.
        TableNotFound: a table asked for is not in the source schema.
    """
    dbs = Databases(job.source_url, job.target_url)
    try:
        catalog = dbs.catalog()
        if tables is None:
            chosen = job_tables(catalog, job)
        else:
            chosen = [narrowed(table, job) for table in resolve_tables(catalog, tables)]
        results: dict[str, VerificationResult] = {}
        for table in chosen:
            write_mode = job.for_table(table.name).write_mode
            try:
                with dbs.source.connect() as conn:
                    spec = target_table(conn, dbs.target, table, write_mode=write_mode)
                if spec.ddl is not None:
                    raise VerificationFailed(f"table {table.target!r} does not exist on the target")
                results[table.name] = verify_table(
                    dbs.source,
                    dbs.target,
                    table,
                    spec,
                    allow_extra_rows=write_mode == "append",
                )
            except DataTraceError as exc:
                results[table.name] = {"table": table.name, "ok": False, "error": str(exc)}
        return results
    finally:
        dbs.dispose()
