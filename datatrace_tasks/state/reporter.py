"""What a process function sees of the manager: a per-unit progress reporter."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from datatrace_tasks.exceptions import UnitPaused
from datatrace_tasks.state.units import TaskUnit

if TYPE_CHECKING:
    from datatrace_tasks.state.cache import UnitCache


class ProgressReporter(Protocol):
    """The handle a process function reports through, one per unit run.

    The copy loop calls `report` after each batch has committed on the target. The
    checkpoint it passes is saved with every call, so a resumed unit re-does at most
    the one batch that committed before its checkpoint did; the progress event (and
    the percentage people watch) is throttled.
    """

    @property
    def checkpoint(self) -> Mapping[str, Any] | None:
        """The checkpoint saved by the last run of this unit, or None for a fresh start."""
        ...

    @property
    def processed(self) -> int:
        """Rows processed so far, including those of earlier runs of this unit."""
        ...

    @property
    def high_water(self) -> Mapping[str, Any] | None:
        """The cursor mark the job's last verified run of this unit set (mode incremental):
        `{"cursor": name, "value": encoded value}`, or None."""
        ...

    def set_total(self, total: int) -> None:
        """Record how many records the unit will process (an estimate is fine)."""
        ...

    def report(self, processed: int, checkpoint: Mapping[str, Any] | None = None) -> None:
        """Record the absolute processed count and the checkpoint after a committed batch.

        Raises:
            UnitPaused: a pause was requested; stop now, the checkpoint is saved.
        """
        ...

    def set_verification(self, result: Mapping[str, Any]) -> None:
        """Record how the unit's output was verified (counts, checksums), kept in the store."""
        ...

    def set_figures(self, figures: Mapping[str, Any]) -> None:
        """Record what this run of the unit did (rows read, written, deleted, seconds)."""
        ...

    def should_stop(self) -> bool:
        """True once a pause was requested for this unit's task."""
        ...


ProcessFn = Callable[[TaskUnit, ProgressReporter], None]
"""Processes one unit; raises on failure. Errors with `transient = False` are not retried."""


class ReporterBase:
    """What every reporter keeps and shows: the checkpoint to resume from, rows so far."""

    _checkpoint: dict[str, Any] | None
    _processed: int

    @property
    def checkpoint(self) -> Mapping[str, Any] | None:
        """The checkpoint this unit's last run saved (or the last report kept), or None."""
        return self._checkpoint

    @property
    def processed(self) -> int:
        """Rows processed so far, earlier runs included."""
        return self._processed

    @property
    def high_water(self) -> Mapping[str, Any] | None:
        """No mark: every run of this unit starts afresh (the store's reporter has them)."""
        return None


class UnitReporter(ReporterBase):
    """The `ProgressReporter` a unit's process function receives from the manager."""

    def __init__(self, manager: UnitCache, task_id: str, unit: TaskUnit) -> None:
        self._manager = manager
        self._task_id = task_id
        self._unit_id = unit.id
        self._checkpoint = dict(unit.checkpoint) if unit.checkpoint else None
        self._processed = unit.processed_records if unit.checkpoint else 0
        self._total: int | None = None

    @property
    def high_water(self) -> Mapping[str, Any] | None:
        """The mark the job's last verified run of this unit set, read from the store."""
        return self._manager.store.high_water(self._task_id, self._unit_id)

    def set_total(self, total: int) -> None:
        """Record the unit's total (written at once: the dashboard needs it to draw a bar)."""
        self._total = int(total)
        self._manager.write_unit_progress(
            self._task_id, self._unit_id, self._processed, self._total, force=True
        )

    def report(self, processed: int, checkpoint: Mapping[str, Any] | None = None) -> None:
        """Record progress after a committed batch; raise `UnitPaused` if asked to stop."""
        self._processed = int(processed)
        total = self._total if self._total is not None and self._total >= processed else None
        if total is None and self._total is not None:
            self._total = total = int(processed)  # the estimate was low
        self._manager.write_unit_progress(
            self._task_id, self._unit_id, self._processed, total, checkpoint=checkpoint
        )
        if self._manager.pause_requested(self._task_id):
            raise UnitPaused(f"unit {self._unit_id!r} paused at {self._processed} records")

    def set_verification(self, result: Mapping[str, Any]) -> None:
        """Keep the unit's verification result in the store."""
        self._manager.record_verification(self._task_id, self._unit_id, result)

    def set_figures(self, figures: Mapping[str, Any]) -> None:
        """Keep what this run did in the store (a job's history reads it)."""
        self._manager.store.write_unit(self._task_id, self._unit_id, figures=figures)

    def should_stop(self) -> bool:
        """True once a pause was requested."""
        return self._manager.pause_requested(self._task_id)
