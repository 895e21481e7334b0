"""Proof that a target table holds the source rows: equal counts and equal checksums.

MySQL to MySQL, the servers compare checksums per key range (`checksum.py`) and
only a range that differs is read here. Otherwise both sides are read chunk by
chunk along the source key: a chunk of source rows in key order, then the target
rows with exactly those keys (looked up by key rather than by range, because the
target may sort text in another collation). Every value is turned into one
canonical text per source column type on both sides, so a DECIMAL read back from
SQLite text or a BIT read back from a PostgreSQL integer hashes the same as the
source value.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from datatrace_tasks.exceptions import DataTraceError, TableUnsupported, VerificationFailed
from datatrace_tasks.sync.catalog import SourceColumn, SourceTable, resolve_tables
from datatrace_tasks.sync.checksum import ServerChecksum, source_checksum, table_checksum
from datatrace_tasks.sync.ddl import TargetTable, target_table
from datatrace_tasks.sync.engines import Databases, is_mysql
from datatrace_tasks.sync.job import Job
from datatrace_tasks.sync.reader import Row, as_double, batches
from datatrace_tasks.sync.typemap import canonical_decimal

VerificationResult = dict[str, Any]


def canonical(col: SourceColumn, value: Any) -> Any:
    """One JSON-safe spelling of a value, the same whichever database it came from."""
    if value is None:
        return None
    kind = col.kind
    if kind == "bit":
        return int.from_bytes(value, "big") if isinstance(value, bytes) else int(value)
    if kind in ("integer", "year"):
        return str(int(value))
    if kind == "decimal":
        return canonical_decimal(value)
    if kind == "float":
        return repr(float(value))
    if kind in ("binary", "geometry"):
        return bytes(value).hex()
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value // dt.timedelta(microseconds=1))
    return str(value)


def _line(columns: Sequence[SourceColumn], row: Row | None) -> bytes:
    if row is None:
        return b"<missing>\n"
    values = [canonical(col, row[col.name]) for col in columns]
    return json.dumps(values, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def _target_rows(
    engine: Engine, spec: TargetTable, table: SourceTable, keys: list[tuple[Any, ...]]
) -> dict[tuple[Any, ...], Row]:
    target = spec.table
    # Look keys up as they were written: through the column converters of the target.
    convert = [spec.converters.get(name) for name in table.key]
    keys = [tuple(f(v) if f else v for f, v in zip(convert, k, strict=True)) for k in keys]
    key_cols = [target.c[name] for name in table.key]
    key_defs = [table.column(name) for name in table.key]
    if len(key_cols) == 1:
        where = key_cols[0].in_([k[0] for k in keys])
    else:
        where = sa.tuple_(*key_cols).in_(keys)
    names = [col.name for col in table.columns]
    mysql = engine.dialect.name in ("mysql", "mariadb")  # a MySQL target keeps FLOAT as FLOAT
    stmt = sa.select(
        *(
            as_double(target.c[c.name]).label(c.name)
            if mysql and c.single_float
            else target.c[c.name]
            for c in table.columns
        )
    ).where(where)
    with engine.connect() as conn:
        found = conn.execute(stmt).all()
    rows = [dict(zip(names, row, strict=True)) for row in found]
    return {tuple(canonical(c, r[c.name]) for c in key_defs): r for r in rows}


def _count(engine: Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def _verify_python(
    source: Engine,
    target: Engine,
    table: SourceTable,
    spec: TargetTable,
    *,
    chunk_size: int,
    lo: tuple[Any, ...] | None = None,
    hi: tuple[Any, ...] | None = None,
) -> tuple[int, int, str]:
    """Compare the rows `lo < key <= hi` value by value; returns (rows, chunks, sha256).

    Raises:
        VerificationFailed: a chunk differs.
    """
    columns = list(table.columns)
    key_defs = [table.column(name) for name in table.key]
    total = hashlib.sha256()
    chunks = rows = 0
    for batch in batches(
        source,
        table,
        batch_size=chunk_size,
        target_dialect=target.dialect.name,
        after=lo,
        until=hi,
    ):
        keys = [tuple(r[name] for name in table.key) for r in batch.rows]
        found = _target_rows(target, spec, table, keys)
        src_hash, dst_hash = hashlib.sha256(), hashlib.sha256()
        first_bad: tuple[Any, ...] | None = None
        for key, row in zip(keys, batch.rows, strict=True):
            src_line = _line(columns, row)
            dst_line = _line(
                columns,
                found.get(tuple(canonical(c, v) for c, v in zip(key_defs, key, strict=True))),
            )
            src_hash.update(src_line)
            dst_hash.update(dst_line)
            if first_bad is None and src_line != dst_line:
                first_bad = key
        if src_hash.digest() != dst_hash.digest():

            def show(key: tuple[Any, ...]) -> str:
                return str([canonical(c, v) for c, v in zip(key_defs, key, strict=True)])

            raise VerificationFailed(
                f"table {table.name!r}: chunk {chunks + 1} differs, keys {show(keys[0])}"
                f" to {show(keys[-1])}; first differing key {show(first_bad or keys[0])}"
            )
        total.update(src_hash.digest())
        chunks += 1
        rows += len(batch.rows)
    return rows, chunks, total.hexdigest()


def _verify_server(
    source: Engine,
    target: Engine,
    table: SourceTable,
    spec: TargetTable,
    *,
    chunk_size: int,
    server_chunk: int,
) -> tuple[int, int, str, int]:
    """Compare MySQL to MySQL by server-side range checksums; returns
    (rows, chunks, checksum, rechecked chunks).

    A range whose aggregates differ is compared again value by value before anything
    is reported (the target may sort text keys in another collation, or hold a wider
    but compatible type), so a difference is only ever reported with the row that
    differs.

    Raises:
        VerificationFailed: a range differs value by value too.
    """
    src, dst = ServerChecksum(source, table), ServerChecksum(target, table)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="datatrace-verify")
    rows = chunks = xor = rechecked = 0
    try:
        lo: tuple[Any, ...] | None = None
        while True:
            hi = src.cut_after(lo, server_chunk)
            theirs = pool.submit(dst.aggregate, lo, hi)
            ours = src.aggregate(lo, hi)
            if theirs.result() != ours:
                rechecked += 1
                _verify_python(source, target, table, spec, chunk_size=chunk_size, lo=lo, hi=hi)
            rows += ours[0]
            xor ^= ours[1]
            chunks += 1
            if hi is None:
                break
            lo = hi
    finally:
        pool.shutdown()
        src.close()
        dst.close()
    return rows, chunks, table_checksum(rows, xor), rechecked


SERVER_CHUNK = 50_000
"""Rows per range the servers checksum at once (a differing range is rechecked in
`chunk_size` pieces)."""


def verify_table(
    source: Engine,
    target: Engine,
    table: SourceTable,
    spec: TargetTable,
    *,
    chunk_size: int = 2000,
    allow_extra_rows: bool = False,
) -> VerificationResult:
    """Compare one table on both sides; returns counts, chunks and the checksum.

    MySQL to MySQL is compared by server-side checksums per key range (see
    `checksum.py`); other pairs value by value in Python. The recorded checksum
    depends only on the source, so it is the same whichever target was verified.
    `allow_extra_rows` is for append mode, where the target may hold rows of its own.

    Raises:
        VerificationFailed: counts differ, or a chunk differs (the message names its
            key range and the first differing key).
    """
    rechecked = 0
    if is_mysql(source) and is_mysql(target):
        method = "server checksums"
        server_chunk = max(chunk_size, SERVER_CHUNK)
        rows, chunks, checksum, rechecked = _verify_server(
            source, target, table, spec, chunk_size=chunk_size, server_chunk=server_chunk
        )
        chunk_size = server_chunk
    else:
        method = "python"
        rows, chunks, checksum = _verify_python(source, target, table, spec, chunk_size=chunk_size)
        if is_mysql(source):
            _, checksum = source_checksum(source, table)
    target_rows = _count(target, spec.table)
    if target_rows != rows and not (allow_extra_rows and target_rows > rows):
        raise VerificationFailed(
            f"table {table.name!r}: row counts differ, source {rows}, target {target_rows}"
        )
    return {
        "table": table.name,
        "ok": True,
        "source_rows": rows,
        "target_rows": target_rows,
        "chunks": chunks,
        "chunk_size": chunk_size,
        "method": method,
        "rechecked_chunks": rechecked,
        "key": list(table.key),
        "checksum": checksum,
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
            chosen = resolve_tables(catalog, job.tables, job.include, job.exclude)
        else:
            chosen = resolve_tables(catalog, tables)
        results: dict[str, VerificationResult] = {}
        for table in chosen:
            try:
                if not table.key:
                    raise TableUnsupported(refusal_no_key(table))
                with dbs.source.connect() as conn:
                    spec = target_table(conn, dbs.target, table, write_mode=job.write_mode)
                if spec.ddl is not None:
                    raise VerificationFailed(f"table {table.name!r} does not exist on the target")
                results[table.name] = verify_table(
                    dbs.source,
                    dbs.target,
                    table,
                    spec,
                    allow_extra_rows=job.write_mode == "append",
                )
            except DataTraceError as exc:
                results[table.name] = {"table": table.name, "ok": False, "error": str(exc)}
        return results
    finally:
        dbs.dispose()


def refusal_no_key(table: SourceTable) -> str:
    """Why a table without a usable key is refused."""
    return (
        f"table {table.name!r} has no primary key and no unique key over NOT NULL columns:"
        " without one it cannot be read in a stable order, so a resume could lose or"
        " double rows; add a primary key on the source to copy it"
    )
