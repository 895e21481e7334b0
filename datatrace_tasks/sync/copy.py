"""The process function of a table copy: one unit = one table, resumable batch by batch.

Life of a unit run: check the target table (create it, or refuse an incompatible
one before any row is written), cut a big table into disjoint key ranges (each with
its own checkpoint), copy the ranges side by side, each reading its next batch while
writing the current one, report the checkpoint of every range after each commit (so
a crash in between re-copies at most one batch per range, idempotently), and finally
verify the whole table.

Threads per unit: one writer per range, each fed by a reader thread through a queue
of one page, so memory holds at most three pages per range whatever the table size.
Only the unit's own thread calls the reporter; a writer may load its next batch while
the last one is reported, but commits it only after that report returned, so a pause
stops every range at a batch boundary and a crash loses at most one checkpoint per range.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Generator, Iterator, Mapping
from typing import Any

import sqlalchemy as sa

from datatrace_tasks.exceptions import TableUnsupported
from datatrace_tasks.state.reporter import ProcessFn, ProgressReporter
from datatrace_tasks.state.units import TaskUnit
from datatrace_tasks.sync.bulk import (
    BulkState,
    MysqlLoadWriter,
    MysqlTsv,
    Page,
    PgCopyWriter,
    SinkWriter,
    mysql_pages,
    read_rows,
    row_pages,
)
from datatrace_tasks.sync.catalog import SourceTable
from datatrace_tasks.sync.ddl import TargetTable, target_table
from datatrace_tasks.sync.engines import Databases, is_mysql
from datatrace_tasks.sync.job import Job
from datatrace_tasks.sync.ranges import KeyRange, auto_ranges, from_checkpoint, split, to_checkpoint
from datatrace_tasks.sync.sinks import SqlSink
from datatrace_tasks.sync.verify import refusal_no_key, verify_table

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


def _writer_for(dbs: Databases) -> str:
    """Which write path the target gets: "load", "copy" or "upsert"."""
    if (
        is_mysql(dbs.target)
        and is_mysql(dbs.source)
        and dbs.source.dialect.driver == "pymysql"
        and dbs.target.dialect.driver == "pymysql"
    ):
        return "load"
    if dbs.target.dialect.name == "postgresql" and dbs.target.dialect.driver == "psycopg":
        return "copy"
    return "upsert"


_DONE = object()


def _prefetch(pages: Iterator[Page], stop: threading.Event) -> Generator[Page, None, None]:
    """Read the next page in a thread while the caller writes the current one."""
    box: queue.Queue[Any] = queue.Queue(maxsize=1)

    def offer(item: Any) -> bool:
        while not stop.is_set():
            try:
                box.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for page in pages:
                if not offer(page):
                    return
            offer(_DONE)
        except BaseException as exc:  # handed to the writer, which raises it
            offer(exc)

    thread = threading.Thread(target=read, name="datatrace-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = box.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
        close = getattr(pages, "close", None)
        if close is not None:
            close()


class _RangeCopy:
    """Runs the ranges of one unit in threads; the caller's thread does all reporting."""

    def __init__(
        self,
        dbs: Databases,
        job: Job,
        table: SourceTable,
        spec: TargetTable,
        ranges: list[KeyRange],
        reporter: ProgressReporter,
        stats: dict[str, Any],
    ) -> None:
        self.dbs, self.job, self.table, self.spec = dbs, job, table, spec
        self.ranges, self.reporter, self.stats = ranges, reporter, stats
        self.path = _writer_for(dbs)
        self.bulk = BulkState(self.path == "load")
        self.tsv = MysqlTsv(dbs.source, dbs.target, table) if self.path == "load" else None
        self.events: queue.Queue[tuple[str, int, Any]] = queue.Queue()
        self.stop = threading.Event()
        self.acks: dict[int, queue.Queue[bool]] = {}
        self.target_dialect = dbs.target.dialect.name

    def _pages(self, rng: KeyRange, stop: threading.Event) -> Generator[Page, None, None]:
        if self.tsv is not None:
            pages = mysql_pages(
                self.dbs.source,
                self.table,
                self.tsv,
                start=rng.start,
                hi=rng.hi,
                batch_size=self.job.batch_size,
                as_lines=lambda: self.bulk.enabled,
                target_dialect=self.target_dialect,
            )
        else:
            pages = row_pages(
                self.dbs.source,
                self.table,
                start=rng.start,
                hi=rng.hi,
                batch_size=self.job.batch_size,
                target_dialect=self.target_dialect,
            )
        return _prefetch(pages, stop)

    def _writer(self) -> Any:
        if self.tsv is not None:
            return MysqlLoadWriter(
                self.dbs.target,
                self.spec,
                self.tsv,
                self.job.write_mode,
                self.bulk,
                lambda after, upto: read_rows(
                    self.dbs.source, self.table, after, upto, self.target_dialect
                ),
            )
        if self.path == "copy":
            return PgCopyWriter(self.dbs.target, self.spec, self.job.write_mode)
        return SinkWriter(self.dbs.target, self.spec, self.job.write_mode)

    def _work(self, index: int, replay: bool, rate: float | None) -> None:
        rng, acks = self.ranges[index], self.acks[index]
        throttle = Throttle(rate)
        writer = pages = None
        try:
            writer = self._writer()
            pages = self._pages(rng, threading.Event())
            stage = getattr(writer, "stage", None)
            waiting = False  # a batch was handed over and its checkpoint is not saved yet
            for page in pages:
                if self.stop.is_set():
                    break
                # The next batch is loaded while the last one is being reported, but
                # committed only after its checkpoint is saved: at most one committed
                # batch per range is ever missing from the checkpoint.
                staged = stage is not None and stage(page, replay=replay)
                if waiting:
                    waiting = False
                    if not acks.get():
                        if staged:
                            writer.rollback()
                        break
                if staged:
                    writer.commit()
                else:
                    writer.write(page, replay=replay)
                replay = False
                self.events.put(("batch", index, page))
                waiting = True
                throttle.wait(page.count)
            self.events.put(("end", index, None))
        except BaseException as exc:
            self.events.put(("error", index, exc))
        finally:
            if pages is not None:
                pages.close()
            if writer is not None:
                writer.close()

    def run(self, replay: bool) -> None:
        """Copy every unfinished range; raises the first error (UnitPaused included)."""
        todo = [i for i, r in enumerate(self.ranges) if not r.done]
        self.acks = {i: queue.Queue() for i in todo}
        rate = self.job.throttle_rows_per_second
        share = None if rate is None else rate / max(1, len(todo))
        threads = [
            threading.Thread(
                target=self._work, args=(i, replay, share), name=f"datatrace-range-{i}", daemon=True
            )
            for i in todo
        ]
        for thread in threads:
            thread.start()
        active, failure = len(threads), None
        pending = False
        while active:
            # Everything that arrived together is reported at once: under load the
            # store sees one checkpoint write for several committed batches.
            items = [self.events.get()]
            while True:
                try:
                    items.append(self.events.get_nowait())
                except queue.Empty:
                    break
            committed: list[int] = []
            for kind, index, payload in items:
                rng = self.ranges[index]
                if kind == "batch":
                    rng.last_key, rng.rows = payload.last_key, rng.rows + payload.count
                    self.stats["rows_read"] += payload.count
                    self.stats["batches"] += 1
                    committed.append(index)
                elif kind == "end":
                    rng.done = failure is None and not self.stop.is_set()
                    active -= 1
                else:
                    active -= 1
                    if failure is None:
                        failure = payload
                        self._halt()
            if not committed:
                continue
            if failure is not None:
                pending = True
                continue
            try:
                # After the commits: the saved checkpoint never points past committed rows.
                self.reporter.report(self.done, to_checkpoint(self.ranges))
            except BaseException as exc:
                failure = exc
                self._halt()
                continue
            for index in committed:
                self.acks[index].put(True)
        for thread in threads:
            thread.join()
        if pending:  # other ranges committed after the stop: keep their checkpoints too
            try:
                self.reporter.report(self.done, to_checkpoint(self.ranges))
            except Exception:  # noqa: S110 - the pause (or the first error) is what we raise
                pass
        self.stats["fallback_batches"] = self.bulk.fallbacks
        if failure is not None:
            raise failure

    def _halt(self) -> None:
        """Stop every range at its next batch boundary (their pending commits dropped)."""
        self.stop.set()
        for acks in self.acks.values():
            acks.put(False)

    @property
    def done(self) -> int:
        """Rows committed so far over all ranges, this run and earlier ones."""
        return sum(r.rows for r in self.ranges)


def copy_table(
    dbs: Databases,
    job: Job,
    unit: TaskUnit,
    reporter: ProgressReporter,
    *,
    verify: bool = True,
) -> None:
    """Copy the table `unit.id` from the job's source to its target.

    Writes `unit.extra["copy"]` (rows read in this run, batches, ranges, the write
    path, where it resumed) and, when verifying, hands the result to
    `reporter.set_verification` (also kept in `unit.extra["verification"]`; see
    `verify_table`).

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
    total = estimate_rows(dbs, table)
    reporter.set_total(total)

    ranges = from_checkpoint(checkpoint)
    if ranges is None:
        parts = auto_ranges(total, job.batch_size, job.ranges)
        ranges = split(dbs.source, table, parts, total)
    started = time.perf_counter()
    copier = _RangeCopy(dbs, job, table, spec, ranges, reporter, {})
    stats: dict[str, Any] = {
        "rows_read": 0,
        "batches": 0,
        "ranges": len(ranges),
        "path": copier.path,
        "resumed_after": None if checkpoint is None else checkpoint.get("last_key"),
    }
    if checkpoint is not None and "ranges" in checkpoint:
        stats["resumed_after"] = [r.get("last_key") for r in checkpoint["ranges"]]
    copier.stats = stats
    unit.extra["copy"] = stats
    copier.run(replay=checkpoint is not None)
    sink.finish()
    stats["copy_seconds"] = round(time.perf_counter() - started, 3)
    if verify:
        started = time.perf_counter()
        result = verify_table(
            dbs.source,
            dbs.target,
            table,
            spec,
            chunk_size=job.batch_size,
            allow_extra_rows=job.write_mode == "append",
        )
        stats["verify_seconds"] = round(time.perf_counter() - started, 3)
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
