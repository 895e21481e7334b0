"""What the store hands out: a sync task and an event, as plain frozen values."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from datatrace_tasks.state.models import SyncTaskRow, TaskUnitEventRow, TaskUnitRuntimeRow, utcnow
from datatrace_tasks.state.units import TaskUnit, UnitStatus, percentage


@dataclass(frozen=True)
class SyncTask:
    """A sync task as stored: what to copy, how, and where it stands."""

    id: str
    name: str
    status: str
    concurrency: int
    error_strategy: str
    source: str
    target: str
    spec: dict[str, Any] | None
    message: str
    pause_requested: bool
    owner: str | None
    heartbeat_at: datetime | None
    created_at: datetime
    updated_at: datetime

    def lease_is_live(self, lease_seconds: float, *, now: datetime | None = None) -> bool:
        """The one liveness rule: a runner holds the task and beat within the lease.

        `Store.claim_task` applies the same rule in its conditional UPDATE.
        """
        if self.owner is None or self.heartbeat_at is None:
            return False
        return (now or utcnow()) - self.heartbeat_at < timedelta(seconds=lease_seconds)


@dataclass(frozen=True)
class UnitEvent:
    """One entry of the event log."""

    id: int
    task_id: str
    unit_id: str | None
    kind: str
    status: str
    processed_records: int
    total_records: int
    message: str
    created_at: datetime

    @property
    def percentage(self) -> float:
        """Progress at the time of the event."""
        return percentage(self.processed_records, self.total_records)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as streamed to browsers."""
        return {
            "id": self.id,
            "task_id": self.task_id,
            "unit_id": self.unit_id,
            "kind": self.kind,
            "status": self.status,
            "processed_records": self.processed_records,
            "total_records": self.total_records,
            "percentage": round(self.percentage, 2),
            "message": self.message,
            "created_at": self.created_at.isoformat() + "Z",
        }


def task_record(row: SyncTaskRow) -> SyncTask:
    return SyncTask(
        id=row.id,
        name=row.name,
        status=row.status,
        concurrency=row.concurrency,
        error_strategy=row.error_strategy,
        source=row.source,
        target=row.target,
        spec=row.spec,
        message=row.message,
        pause_requested=row.pause_requested,
        owner=row.owner,
        heartbeat_at=row.heartbeat_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def unit_record(row: TaskUnitRuntimeRow) -> TaskUnit:
    return TaskUnit(
        id=row.unit_id,
        name=row.name,
        status=UnitStatus(row.status),
        total_records=row.total_records,
        processed_records=row.processed_records,
        error_message=row.error_message,
        checkpoint=row.checkpoint,
        attempts=row.attempts,
    )


def event_record(row: TaskUnitEventRow) -> UnitEvent:
    return UnitEvent(
        id=row.id,
        task_id=row.task_id,
        unit_id=row.unit_id,
        kind=row.kind,
        status=row.status,
        processed_records=row.processed_records,
        total_records=row.total_records,
        message=row.message,
        created_at=row.created_at,
    )
