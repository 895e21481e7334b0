"""The vocabulary of the state layer: a task unit, and the statuses and event kinds."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, is_dataclass
from enum import StrEnum
from typing import Any


class UnitStatus(StrEnum):
    """Where a unit is in its life: pending -> running -> completed | failed | paused."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    PAUSED = "paused"

    @property
    def is_final(self) -> bool:
        """True for the states a unit rests in until someone resumes or retries it."""
        return self in (UnitStatus.COMPLETED, UnitStatus.FAILED, UnitStatus.PAUSED)


class TaskStatus(StrEnum):
    """Where a sync task is: created pending, then running, then how its last run ended."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    PAUSED = "paused"


class EventKind(StrEnum):
    """What one row of the event log (`task_unit_events`) records."""

    STATUS = "status"  # a unit changed status
    PROGRESS = "progress"  # a unit's throttled progress
    TASK = "task"  # the task was created or changed status


def percentage(processed: int, total: int) -> float:
    """Progress in percent; a unit with nothing to copy is 0 % until done, never NaN."""
    if total <= 0:
        return 0.0
    return min(100.0, processed / total * 100.0)


@dataclass
class TaskUnit:
    """One unit of work: the seed's `TaskUnit`, plus the checkpoint a resume starts from.

    `id` is stable within its task (the table name for a table copy); `name` is shown
    to people. `checkpoint` is opaque to the manager: the process function writes it
    after each committed batch and reads it back on resume.
    """

    id: str
    name: str
    status: UnitStatus = UnitStatus.PENDING
    total_records: int = 0
    processed_records: int = 0
    error_message: str = ""
    checkpoint: dict[str, Any] | None = None
    attempts: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def percentage(self) -> float:
        """`processed / total * 100`; 100 for a completed unit with zero rows."""
        if self.status is UnitStatus.COMPLETED and self.total_records == 0:
            return 100.0
        return percentage(self.processed_records, self.total_records)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view, as the store, the monitor and the API show it."""
        data = asdict(self)
        data["status"] = self.status.value
        data["percentage"] = round(self.percentage, 2)
        return data


class Progress:
    """Rows processed of total and the percentage they make: events and rollups have them."""

    processed_records: int
    total_records: int

    @property
    def percentage(self) -> float:
        """Rows processed of total, in percent."""
        return percentage(self.processed_records, self.total_records)

    def progress_dict(self) -> dict[str, Any]:
        """The record's fields and its rounded percentage (a dataclass's, JSON-ready)."""
        assert is_dataclass(self) and not isinstance(self, type)
        data = asdict(self)
        data["percentage"] = round(self.percentage, 2)
        return data
