"""How a run of a sync task ended, counted from the store: one count for every caller."""

from __future__ import annotations

from dataclasses import dataclass

from datatrace_tasks.state.store import Store
from datatrace_tasks.state.units import UnitStatus


@dataclass(frozen=True)
class RunOutcome:
    """How a run of a sync task ended."""

    task_id: str
    completed_now: int
    units: int
    completed: int
    failed: int
    unfinished: int
    notes: tuple[str, ...] = ()  # what the run did after its units (foreign keys added)

    @property
    def ok(self) -> bool:
        """Every unit of the task completed (and so was verified)."""
        return self.completed == self.units

    @property
    def summary(self) -> str:
        """`4 of 6 units completed, 1 failed, 1 not finished`."""
        return (
            f"{self.completed} of {self.units} units completed, {self.failed} failed, "
            f"{self.unfinished} not finished"
        )


def outcome(store: Store, task_id: str, *, completed_now: int = 0) -> RunOutcome:
    """Count the task's units as the store has them now."""
    units = store.load_units(task_id)
    completed = sum(u.status is UnitStatus.COMPLETED for u in units)
    failed = sum(u.status is UnitStatus.FAILED for u in units)
    return RunOutcome(
        task_id=task_id,
        completed_now=completed_now,
        units=len(units),
        completed=completed,
        failed=failed,
        unfinished=len(units) - completed - failed,
    )
