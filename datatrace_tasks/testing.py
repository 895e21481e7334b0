"""Helpers for testing code built on DataTrace, shipped with the package (like structlog.testing).

A process function (`ProcessFn`) is called with a `ProgressReporter`; the real one
belongs to a `TaskManager` and writes through a state store, under a Prefect flow.
Testing a process function, or anything that reads the store, should need none of
that. This module gives the two pieces such tests otherwise write again and again:

* `MemoryReporter`, a `ProgressReporter` that keeps in memory what the store would
  persist (total, progress, checkpoints, verification), and can stop a unit after a
  chosen number of reports (with or without losing the last checkpoint, as a crash
  between a batch's commit and its checkpoint save would);
* `temporary_store`, a migrated `Store` on a throwaway SQLite file (or on a URL you
  give), disposed (and its file removed) when the block ends.

DataTrace's own test suite uses them, so they keep working as the library changes.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datatrace_tasks.exceptions import UnitPaused
from datatrace_tasks.state.reporter import ReporterBase
from datatrace_tasks.state.store import Store

if TYPE_CHECKING:
    from datatrace_tasks.state.reporter import ProgressReporter

__all__ = ["MemoryReporter", "temporary_store"]


class MemoryReporter(ReporterBase):
    """A ProgressReporter that keeps everything in memory, as the store would persist it.

    Args:
        checkpoint: the checkpoint of an earlier run of the unit (a resume), or None for
            a fresh start; its `"rows"` entry, if any, is where `processed` starts.
        stop_after: `report` raises `UnitPaused` once that many reports were made (the
            way a pause request stops a unit at a batch boundary); None never stops.
        lose_last_checkpoint: the stopping call does not keep its progress and
            checkpoint, as a crash between a batch's commit and its checkpoint save.
        high_water: the mark a verified earlier run of the job set (mode incremental).

    Every call to `report` is kept in `reports` as `(processed, checkpoint)`, whether
    or not its checkpoint was kept.
    """

    def __init__(
        self,
        checkpoint: Mapping[str, Any] | None = None,
        *,
        stop_after: int | None = None,
        lose_last_checkpoint: bool = False,
        high_water: Mapping[str, Any] | None = None,
    ) -> None:
        self._checkpoint = dict(checkpoint) if checkpoint is not None else None
        self._processed = int(checkpoint["rows"]) if checkpoint and "rows" in checkpoint else 0
        self.total: int | None = None
        self.verification: dict[str, Any] | None = None
        self.figures: dict[str, Any] | None = None
        self.reports: list[tuple[int, dict[str, Any] | None]] = []
        self.stop_after = stop_after
        self.lose_last_checkpoint = lose_last_checkpoint
        self._high_water = dict(high_water) if high_water is not None else None

    @property
    def high_water(self) -> Mapping[str, Any] | None:
        """The mark given to the constructor."""
        return self._high_water

    def set_total(self, total: int) -> None:
        """Keep the total."""
        self.total = total

    def report(self, processed: int, checkpoint: Mapping[str, Any] | None = None) -> None:
        """Save progress, then raise UnitPaused once `stop_after` reports were made.

        Raises:
            UnitPaused: this was report number `stop_after` (or a later one).
        """
        self.reports.append((processed, dict(checkpoint) if checkpoint else None))
        stopping = self.should_stop()
        if not (stopping and self.lose_last_checkpoint):
            self._processed = processed
            if checkpoint is not None:
                self._checkpoint = dict(checkpoint)
        if stopping:
            raise UnitPaused("pause requested")

    def set_verification(self, result: Mapping[str, Any]) -> None:
        """Keep the verification result."""
        self.verification = dict(result)

    def set_figures(self, figures: Mapping[str, Any]) -> None:
        """Keep what the run did."""
        self.figures = dict(figures)

    def should_stop(self) -> bool:
        """True once the stop point was reached."""
        return self.stop_after is not None and len(self.reports) >= self.stop_after


if TYPE_CHECKING:
    _a_reporter: ProgressReporter = MemoryReporter()  # mypy: it implements the protocol


@contextmanager
def temporary_store(url: str | None = None) -> Iterator[Store]:
    """A migrated state store for the block; disposed when it ends.

    Args:
        url: the store's SQLAlchemy URL. None (the default) makes a SQLite file in a
            new temporary folder, removed with everything in it when the block ends; a
            URL you give is used as it is and its database is left in place.
    """
    folder: Path | None = None
    if url is None:
        folder = Path(tempfile.mkdtemp(prefix="datatrace-store-"))
        url = f"sqlite:///{folder / 'state.db'}"
    try:
        store = Store(url)
        try:
            yield store
        finally:
            store.dispose()
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
