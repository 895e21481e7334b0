"""The process function of a table copy: one unit = one table, resumable batch by batch.

Life of a unit run: check the target table (create it, or refuse an incompatible
one before any row is written), cut a big table into disjoint key ranges (each with
its own checkpoint), copy the ranges side by side, each reading its next batch while
writing the current one, report the checkpoint of every range after each commit (so
a crash in between re-copies at most one batch per range, idempotently), and finally
verify the whole table. The threads that copy the ranges are in `rangecopy`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from datatrace_tasks.exceptions import VerificationFailed
from datatrace_tasks.state.reporter import ProgressReporter
from datatrace_tasks.state.units import TaskUnit
from datatrace_tasks.sync.catalog import SourceTable
from datatrace_tasks.sync.ddl import TargetTable, target_table
from datatrace_tasks.sync.differential import has_rows, resync_table
from datatrace_tasks.sync.engines import Databases
from datatrace_tasks.sync.fingerprint import Scope
from datatrace_tasks.sync.finish import finish_table, sqlite_links
from datatrace_tasks.sync.incremental import (
    Window,
    open_window,
    scope,
    window_rows,
)
from datatrace_tasks.sync.job import Job
from datatrace_tasks.sync.keyless import copy_keyless
from datatrace_tasks.sync.rangecopy import RangeCopy
from datatrace_tasks.sync.ranges import KeyRange, auto_ranges, from_checkpoint, split
from datatrace_tasks.sync.repair import repair_rows
from datatrace_tasks.sync.schema import read_objects
from datatrace_tasks.sync.sinks import SqlSink
from datatrace_tasks.sync.tablesettings import narrowed
from datatrace_tasks.sync.unstorable import refuse_unstorable
from datatrace_tasks.sync.verify import Differences, verify_table

EXACT_COUNT_BELOW = 1_000_000
"""Tables estimated smaller than this get an exact COUNT(*) as their total."""


def estimate_rows(dbs: Databases, table: SourceTable) -> int:
    """Exact for small tables, the catalog's estimate for big ones (COUNT(*) scans)."""
    if table.estimated_rows >= EXACT_COUNT_BELOW:
        return table.estimated_rows
    return count_rows(dbs, table)


def count_rows(dbs: Databases, table: SourceTable) -> int:
    """The source's `COUNT(*)` of the table's rows (those its row filter keeps)."""
    with dbs.source.connect() as conn:
        stmt = sa.select(sa.func.count()).select_from(table.source_rows())
        return int(conn.execute(stmt).scalar_one())


def _key_ranges(
    dbs: Databases, job: Job, table: SourceTable, checkpoint: Mapping[str, Any] | None, total: int
) -> list[KeyRange]:
    """The ranges saved in the checkpoint, or a fresh cut of the table by its key."""
    ranges = from_checkpoint(checkpoint)
    if ranges is None:
        parts = auto_ranges(total, job.batch_size, job.ranges)
        ranges = split(dbs.source, table, parts, total)
    return ranges


def _copy_stats(
    path: str, ranges: list[KeyRange], checkpoint: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The fresh `unit.extra["copy"]` of this run, with where each range resumed."""
    resumed_after: Any = None if checkpoint is None else checkpoint.get("last_key")
    if checkpoint is not None and "ranges" in checkpoint:
        resumed_after = [r.get("last_key") for r in checkpoint["ranges"]]
    return {
        "rows_read": 0,
        "batches": 0,
        "ranges": len(ranges),
        "path": path,
        "resumed_after": resumed_after,
    }


def _verify(
    dbs: Databases,
    job: Job,
    table: SourceTable,
    spec: TargetTable,
    unit: TaskUnit,
    reporter: ProgressReporter,
    stats: dict[str, Any],
    *,
    verify: bool,
    window: Scope | None = None,
    repair: bool = False,
) -> None:
    """Compare the copied table (or `window` of it) with the source and hand the result
    to the reporter; if rows differ and `repair` holds, re-copy them once and verify
    again."""
    if not verify:
        return

    def check() -> None:
        started = time.perf_counter()
        result = verify_table(
            dbs.source,
            dbs.target,
            table,
            spec,
            # A window's target rows may include rows since deleted on the source.
            allow_extra_rows=job.write_mode == "append" or window is not None,
            scope=window,
        )
        stats["verify_seconds"] = round(time.perf_counter() - started, 3)
        unit.extra["verification"] = result
        reporter.set_verification(result)

    try:
        check()
    except VerificationFailed as exc:
        diff = exc.differences
        if not repair or not isinstance(diff, Differences) or job.write_mode == "append":
            raise
        stats["repaired_rows"] = repair_rows(dbs, table, spec, diff)
        check()


def copy_table(
    dbs: Databases,
    job: Job,
    unit: TaskUnit,
    reporter: ProgressReporter,
    *,
    verify: bool = True,
) -> None:
    """Copy the table `unit.id` from the job's source to its target, then build its
    secondary indexes and set its next AUTO_INCREMENT value (`finish.py`; what was
    built and what could not be is kept in `unit.extra["schema"]`).

    Writes `unit.extra["copy"]` (rows read in this run, batches, ranges, the write
    path, where it resumed) and, when verifying, hands the result to
    `reporter.set_verification` (also kept in `unit.extra["verification"]`; see
    `verify_table`). A resumed unit whose verification fails re-copies the rows it
    names (`repair.py`, counted in `repaired_rows`) and verifies once more.
    `mode: differential` writes only what differs (`differential.py`), `mode:
    incremental` only the rows whose cursor moved (`incremental.py`; the mark it sets
    is kept in `unit.extra["high_water"]` once verified).

    Raises:
        TableNotFound: `unit.id` is not a source table.
        TableUnsupported: the table has no usable key and write_mode is append.
        SchemaIncompatible: the existing target table cannot take the rows.
        UnitPaused: a pause was requested (from `reporter.report`); checkpoint kept.
        VerificationFailed: the target differs from the source after the copy.
    """
    table = narrowed(dbs.table(unit.id), job)
    spec = _copy_and_verify(dbs, job, table, unit, reporter, verify=verify)
    objects = dbs.once("schema objects", lambda: read_objects(dbs.source))
    unit.extra["schema"] = finish_table(dbs, table, spec, objects).to_json()


def _copy_and_verify(
    dbs: Databases,
    job: Job,
    table: SourceTable,
    unit: TaskUnit,
    reporter: ProgressReporter,
    *,
    verify: bool,
) -> TargetTable:
    """The copy of one table in the job's mode, verified; returns its target table."""
    target = dbs.target.dialect.name
    if not table.key:  # staged whole and swapped in (keyless.py); restarts from zero
        refuse_unstorable(dbs.source, table, target)
        spec = copy_keyless(dbs, job, table, unit, reporter)
        _verify(dbs, job, table, spec, unit, reporter, unit.extra["copy"], verify=verify)
        return spec
    links = sqlite_links(dbs, job, table)
    with dbs.source.connect() as conn:
        spec = target_table(conn, dbs.target, table, write_mode=job.write_mode, links=links)
    checkpoint: Mapping[str, Any] | None = reporter.checkpoint
    window = open_window(dbs, job, table, spec, reporter) if job.mode == "incremental" else None
    if window is not None and window.low is not None:
        # The window's rows are counted by the same filter that copies them.
        rows = window_rows(dbs, table, window)
        carried = {"incremental": window.to_json()}
        total = count_rows(dbs, rows)
        stats = _copy_ranges(dbs, job, rows, spec, unit, reporter, carried, total=total)
        stats.update(path="incremental", since=str(window.low), write_path=stats["path"])
        # Rows changed on the source while the window was copied are copied again.
        ranged = scope(table, window)
        _verify(
            dbs, job, table, spec, unit, reporter, stats, verify=verify, window=ranged, repair=True
        )
        _set_mark(unit, window, verify)
        return spec
    if job.mode == "differential" and checkpoint is None and has_rows(dbs, spec):
        # The comparison and the re-check of what it repaired are the verification.
        unit.extra["copy"], unit.extra["verification"] = resync_table(dbs, table, spec, reporter)
        reporter.set_verification(unit.extra["verification"])
        return spec
    carry = {} if window is None else {"incremental": window.to_json()}
    if checkpoint is None:  # a first copy: refused before its first row if it must be
        refuse_unstorable(dbs.source, table, target)
    stats = _copy_ranges(dbs, job, table, spec, unit, reporter, carry)
    # A resumed unit re-copies the rows that differ, once, then verifies again.
    repair = checkpoint is not None
    _verify(dbs, job, table, spec, unit, reporter, stats, verify=verify, repair=repair)
    if window is not None:
        _set_mark(unit, window, verify)
    return spec


def _copy_ranges(
    dbs: Databases,
    job: Job,
    table: SourceTable,
    spec: TargetTable,
    unit: TaskUnit,
    reporter: ProgressReporter,
    carry: dict[str, Any],
    *,
    total: int | None = None,
) -> dict[str, Any]:
    """Copy every row, key ranges side by side from where the checkpoint left them;
    `carry` goes into every checkpoint beside the ranges. Returns the `copy` figures."""
    checkpoint = reporter.checkpoint
    sink = SqlSink(dbs.target, spec, job.write_mode)
    sink.prepare(fresh=checkpoint is None)
    total = estimate_rows(dbs, table) if total is None else total
    reporter.set_total(total)
    ranges = _key_ranges(dbs, job, table, checkpoint, total)
    started = time.perf_counter()
    copier = RangeCopy(dbs, job, table, spec, ranges, reporter, {})
    copier.carry = carry
    stats = _copy_stats(copier.path, ranges, checkpoint)
    copier.stats = stats
    unit.extra["copy"] = stats
    copier.run(replay=checkpoint is not None)
    sink.finish()
    stats["copy_seconds"] = round(time.perf_counter() - started, 3)
    return stats


def _set_mark(unit: TaskUnit, window: Window, verified: bool) -> None:
    """Keep the window's mark for the job's next run: only a verified run sets one."""
    if verified and window.mark is not None:
        unit.extra["high_water"] = window.mark


def _figures(unit: TaskUnit, job: Job) -> dict[str, Any]:
    """What a unit's run did, as its job's history shows it."""
    stats = unit.extra.get("copy", {})
    verification = unit.extra.get("verification") or {}
    path = stats.get("path")
    read = int(stats.get("rows_read", 0))
    figures = {
        "mode": path if path in ("differential", "incremental") else "full",
        "rows_read": read,
        "rows_written": int(stats.get("rows_written", read)),
        "rows_deleted": int(stats.get("rows_deleted", 0)),
        "verified": bool(verification.get("ok")),
        "write_mode": job.write_mode,
    }
    if figures["verified"] and "high_water" in unit.extra:
        figures["high_water"] = unit.extra["high_water"]
    return figures


class JobCopy:
    """The copy engine's process function for one job: call it with a unit and a reporter.

    Engines and the source catalog are made on first use and shared by all units of
    the job (it is safe to call from several threads at once); `close` releases them.
    """

    def __init__(self, job: Job, *, verify: bool = True) -> None:
        self.job = job
        self.verify = verify
        self._dbs: Databases | None = None
        self._lock = threading.Lock()

    def __call__(self, unit: TaskUnit, reporter: ProgressReporter) -> None:
        with self._lock:
            if self._dbs is None:
                self._dbs = Databases(self.job.source_url, self.job.target_url)
            dbs = self._dbs
        job = self.job.for_table(unit.id)  # its mode, cursor and write mode
        copy_table(dbs, job, unit, reporter, verify=self.verify)
        reporter.set_figures(_figures(unit, job))

    def close(self) -> None:
        """Close the job's pooled connections (a later call opens new ones)."""
        with self._lock:
            dbs, self._dbs = self._dbs, None
        if dbs is not None:
            dbs.dispose()


def make_process_fn(job: Job, *, verify: bool = True) -> JobCopy:
    """The `ProcessFn` a TaskManager runs for each table of `job`.

    Example:
        >>> process = make_process_fn(load_job("sakila.yaml"))
        >>> process(unit, reporter)  # copies table unit.id, then verifies it
        >>> process.close()
    """
    return JobCopy(job, verify=verify)
