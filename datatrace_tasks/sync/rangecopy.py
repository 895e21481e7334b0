"""The key ranges of one unit copied side by side, each batch committed after its checkpoint.

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
from collections.abc import Generator, Iterator
from typing import Any

from datatrace_tasks.state.reporter import ProgressReporter
from datatrace_tasks.sync.bulk import (
    BulkState,
    MysqlLoadWriter,
    MysqlTsv,
    Page,
    SinkWriter,
    mysql_pages,
    read_rows,
    row_pages,
)
from datatrace_tasks.sync.catalog import SourceTable
from datatrace_tasks.sync.ddl import TargetTable
from datatrace_tasks.sync.engines import Databases, is_mysql
from datatrace_tasks.sync.job import Job
from datatrace_tasks.sync.pgcopy import PgCopyWriter, PgText
from datatrace_tasks.sync.ranges import KeyRange, to_checkpoint
from datatrace_tasks.sync.reader import Row
from datatrace_tasks.sync.sqlitecopy import AttachWriter, attachable, key_pages

Event = tuple[str, int, Any]
"""What a range's thread tells the unit's thread: ("batch" | "end" | "error", range, payload)."""


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


def _mysql_source(dbs: Databases) -> bool:
    return is_mysql(dbs.source) and dbs.source.dialect.driver == "pymysql"


def writer_for(dbs: Databases) -> str:
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


def prefetch(pages: Iterator[Page], stop: threading.Event) -> Generator[Page, None, None]:
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


class RangeCopy:
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
        self.path = "attach" if attachable(dbs.source, dbs.target, table) else writer_for(dbs)
        self.tsv: MysqlTsv | PgText | None = None
        if self.path == "load":
            self.tsv = MysqlTsv(dbs.source, dbs.target, table)
        elif self.path == "copy" and _mysql_source(dbs):
            self.tsv = PgText(dbs.source, table, spec)
        self.bulk = BulkState(self.tsv is not None)
        self.events: queue.Queue[Event] = queue.Queue()
        self.stop = threading.Event()
        self.acks: dict[int, queue.Queue[bool]] = {}
        self.target_dialect = dbs.target.dialect.name
        self.failure: BaseException | None = None  # the first error of any range, raised last
        self.carry: dict[str, Any] = {}  # kept in every checkpoint beside the ranges

    def _pages(self, rng: KeyRange, stop: threading.Event) -> Generator[Page, None, None]:
        if self.path == "attach":
            pages: Iterator[Page] = key_pages(
                self.dbs.source,
                self.table,
                start=rng.start,
                hi=rng.hi,
                batch_size=self.job.batch_size,
            )
        elif self.tsv is not None:
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
        return prefetch(pages, stop)

    def _fetch_rows(self, after: Any, upto: Any) -> list[Row]:
        return read_rows(self.dbs.source, self.table, after, upto, self.target_dialect)

    def _writer(self) -> Any:
        if isinstance(self.tsv, MysqlTsv):
            return MysqlLoadWriter(
                self.dbs.target,
                self.spec,
                self.tsv,
                self.job.write_mode,
                self.bulk,
                self._fetch_rows,
            )
        if self.path == "attach":
            return AttachWriter(
                self.dbs.source, self.dbs.target, self.table, self.spec, self.job.write_mode
            )
        if self.path == "copy":
            return PgCopyWriter(
                self.dbs.target, self.spec, self.job.write_mode, self.bulk, self._fetch_rows
            )
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
        threads = self._start(replay)
        active, pending = len(threads), False
        while active:
            committed, ended = self._take(self._arrived())
            active -= ended
            if not committed:
                continue
            if self.failure is not None:
                pending = True
                continue
            self._report(committed)
        for thread in threads:
            thread.join()
        if pending:  # other ranges committed after the stop: keep their checkpoints too
            try:
                self.reporter.report(self.done, self._checkpoint())
            except Exception:  # noqa: S110 - the pause (or the first error) is what we raise
                pass
        self.stats["fallback_batches"] = self.bulk.fallbacks
        if self.failure is not None:
            raise self.failure

    def _start(self, replay: bool) -> list[threading.Thread]:
        """One started thread per unfinished range, sharing the job's throttle evenly."""
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
        return threads

    def _arrived(self) -> list[Event]:
        """The next event and all that arrived with it.

        Everything that arrived together is reported at once: under load the store
        sees one checkpoint write for several committed batches.
        """
        items = [self.events.get()]
        while True:
            try:
                items.append(self.events.get_nowait())
            except queue.Empty:
                return items

    def _take(self, items: list[Event]) -> tuple[list[int], int]:
        """Apply `items` to the ranges: the ranges that committed a batch, and how many ended."""
        committed: list[int] = []
        ended = 0
        for kind, index, payload in items:
            rng = self.ranges[index]
            if kind == "batch":
                rng.last_key, rng.rows = payload.last_key, rng.rows + payload.count
                self.stats["rows_read"] += payload.count
                self.stats["batches"] += 1
                committed.append(index)
            elif kind == "end":
                rng.done = self.failure is None and not self.stop.is_set()
                ended += 1
            else:
                ended += 1
                self._fail(payload)
        return committed, ended

    def _report(self, committed: list[int]) -> None:
        """Save the checkpoint, then let the `committed` ranges commit their next batch."""
        try:
            # After the commits: the saved checkpoint never points past committed rows.
            self.reporter.report(self.done, self._checkpoint())
        except BaseException as exc:
            self._fail(exc)
            return
        for index in committed:
            self.acks[index].put(True)

    def _fail(self, exc: BaseException) -> None:
        """Keep the first error and stop every range; later errors are dropped."""
        if self.failure is None:
            self.failure = exc
            self._halt()

    def _halt(self) -> None:
        """Stop every range at its next batch boundary (their pending commits dropped)."""
        self.stop.set()
        for acks in self.acks.values():
            acks.put(False)

    def _checkpoint(self) -> dict[str, Any]:
        return {**to_checkpoint(self.ranges), **self.carry}

    @property
    def done(self) -> int:
        """Rows committed so far over all ranges, this run and earlier ones."""
        return sum(r.rows for r in self.ranges)
