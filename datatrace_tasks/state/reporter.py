"""What a process function sees of the manager: a per-unit progress reporter."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from datatrace_tasks.state.units import TaskUnit


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

    def should_stop(self) -> bool:
        """True once a pause was requested for this unit's task."""
        ...


ProcessFn = Callable[[TaskUnit, ProgressReporter], None]
"""Processes one unit; raises on failure. Errors with `transient = False` are not retried."""
