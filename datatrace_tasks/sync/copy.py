"""The process function of a table copy: one unit = one table, resumable batch by batch.

Life of a unit run: check the target table (create it, or refuse an incompatible
one before any row is written), read the source in key order after the checkpoint's
last key, write each batch in one target transaction, then report the new checkpoint
(after the commit, so a crash in between re-copies at most that batch, idempotently),
and finally verify the whole table.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from datatrace_tasks.exceptions import TableUnsupported
from datatrace_tasks.reporter import ProcessFn, ProgressReporter
from datatrace_tasks.sync.catalog import SourceTable
from datatrace_tasks.sync.checkpoint import decode_key, encode_key
from datatrace_tasks.sync.ddl import target_table
from datatrace_tasks.sync.engines import Databases
from datatrace_tasks.sync.job import Job
from datatrace_tasks.sync.reader import batches
from datatrace_tasks.sync.sinks import SqlSink
from datatrace_tasks.sync.verify import refusal_no_key, verify_table
from datatrace_tasks.units import TaskUnit

EXACT_COUNT_BELOW = 1_000_000
"""Tables estimated smaller than this get an exact COUNT(*) as their total."""


class Throttle:
    """Sleeps so that rows per second stay at or under `rate` (None: never sleeps)."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self.started = time.monotonic()
        self.rows = 0

    def wait(self, rows: int) -> None:
        """Account for `rows` more rows and sleep if they came too fast."""
        if self.rate is None:
            return
        self.rows += rows
        ahead = self.rows / self.rate - (time.monotonic() - self.started)
        if ahead > 0:
            time.sleep(ahead)


def estimate_rows(dbs: Databases, table: SourceTable) -> int:
    """Exact for small tables, the catalog's estimate for big ones (COUNT(*) scans)."""
    if table.estimated_rows >= EXACT_COUNT_BELOW:
        return table.estimated_rows
    with dbs.source.connect() as conn:
        stmt = sa.select(sa.func.count()).select_from(table.sa_table())
        return int(conn.execute(stmt).scalar_one())


def copy_table(
    dbs: Databases,
    job: Job,
    unit: TaskUnit,
    reporter: ProgressReporter,
    *,
    verify: bool = True,
) -> None:
    """Copy the table `unit.id` from the job's source to its target.

    Writes `unit.extra["copy"]` (rows read in this run, batches, where it resumed)
    and, when verifying, hands the result to `reporter.set_verification` (also kept in
    `unit.extra["verification"]`; see `verify_table`).

    Raises:
        TableNotFound: `unit.id` is not a source table.
        TableUnsupported: the table has no usable key.
        SchemaIncompatible: the existing target table cannot take the rows.
        UnitPaused: a pause was requested (from `reporter.report`); checkpoint kept.
        VerificationFailed: the target differs from the source after the copy.
    """
    table = dbs.table(unit.id)
    if not table.key:
        raise TableUnsupported(refusal_no_key(table))
    with dbs.source.connect() as conn:
        spec = target_table(conn, dbs.target, table, write_mode=job.write_mode)
    sink = SqlSink(dbs.target, spec, job.write_mode)
    checkpoint: Mapping[str, Any] | None = reporter.checkpoint
    sink.prepare(fresh=checkpoint is None)
    reporter.set_total(estimate_rows(dbs, table))

    after = None
    done = 0
    if checkpoint is not None:
        done = int(checkpoint.get("rows", 0))
        if checkpoint.get("last_key") is not None:
            after = decode_key(checkpoint["last_key"])
    stats: dict[str, Any] = {
        "rows_read": 0,
        "batches": 0,
        "resumed_after": None if checkpoint is None else checkpoint.get("last_key"),
    }
    unit.extra["copy"] = stats
    throttle = Throttle(job.throttle_rows_per_second)
    replay = checkpoint is not None
    for batch in batches(
        dbs.source,
        table,
        batch_size=job.batch_size,
        target_dialect=dbs.target.dialect.name,
        after=after,
    ):
        sink.write_batch(batch.rows, replay=replay)
        replay = False
        done += len(batch.rows)
        stats["rows_read"] += len(batch.rows)
        stats["batches"] += 1
        # After the commit: the saved checkpoint never points past committed rows.
        reporter.report(done, {"last_key": encode_key(batch.last_key), "rows": done})
        throttle.wait(len(batch.rows))
    sink.finish()
    if verify:
        result = verify_table(
            dbs.source,
            dbs.target,
            table,
            spec,
            chunk_size=job.batch_size,
            allow_extra_rows=job.write_mode == "append",
        )
        unit.extra["verification"] = result
        reporter.set_verification(result)


def make_process_fn(job: Job, *, verify: bool = True) -> ProcessFn:
    """The `ProcessFn` a TaskManager runs for each table of `job`.

    Engines and the source catalog are shared by all units of the job (the
    function is safe to call from several threads at once).

    Example:
        >>> process = make_process_fn(load_job("sakila.yaml"))
        >>> process(unit, reporter)  # copies table unit.id, then verifies it
    """
    dbs: list[Databases] = []
    lock = threading.Lock()

    def process(unit: TaskUnit, reporter: ProgressReporter) -> None:
        with lock:
            if not dbs:
                dbs.append(Databases(job.source_url, job.target_url))
        copy_table(dbs[0], job, unit, reporter, verify=verify)

    return process
