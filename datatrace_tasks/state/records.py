"""What the store hands out: a sync task and an event, as plain frozen values."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, TypeVar

from datatrace_tasks.state.leases import holder_is_gone
from datatrace_tasks.state.models import SyncTaskRow, TaskUnitEventRow, utcnow
from datatrace_tasks.state.units import EventKind, Progress, TaskStatus, TaskUnit, UnitStatus

R = TypeVar("R")


@dataclass(frozen=True)
class SyncTask:
    """A sync task as stored: what to copy, how, and where it stands."""

    id: str
    name: str
    status: TaskStatus
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
        """The one liveness rule: a runner holds the task, beat within the lease, and is
        not a process of this host that is gone (`leases.holder_is_gone`).

        `Store.claim_task` applies the same rule in its conditional UPDATE.
        """
        if self.owner is None or self.heartbeat_at is None or holder_is_gone(self.owner):
            return False
        return (now or utcnow()) - self.heartbeat_at < timedelta(seconds=lease_seconds)


@dataclass(frozen=True)
class UnitEvent(Progress):
    """One entry of the event log."""

    id: int
    task_id: str
    unit_id: str | None
    kind: EventKind
    status: str
    processed_records: int
    total_records: int
    message: str
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as streamed to browsers."""
        data = self.progress_dict()
        data["created_at"] = self.created_at.isoformat() + "Z"
        return data


def elapsed_seconds(columns: dict[str, Any]) -> float | None:
    """How long a unit's run took, from its row's `started_at` and `finished_at`."""
    started, finished = columns["started_at"], columns["finished_at"]
    if started is None or finished is None:
        return None
    return max(float((finished - started).total_seconds()), 0.0)


def _from_row(record: type[R], row: object, **given: Any) -> R:
    """A record whose fields are the row's columns of the same name, bar those `given`."""
    values = {
        f.name: getattr(row, f.name)
        for f in fields(record)  # type: ignore[arg-type]
        if f.name not in given and hasattr(row, f.name)
    }
    return record(**values, **given)


def task_record(row: SyncTaskRow) -> SyncTask:
    """The task a `sync_tasks` row holds."""
    return _from_row(SyncTask, row, status=TaskStatus(row.status))


def unit_record(row: Any) -> TaskUnit:
    """The unit a `task_unit_runtimes` row holds, ORM object or Core row (its id is the
    row's `unit_id`)."""
    return _from_row(TaskUnit, row, id=row.unit_id, status=UnitStatus(row.status))


def event_record(row: TaskUnitEventRow) -> UnitEvent:
    """The event a `task_unit_events` row holds."""
    return _from_row(UnitEvent, row, kind=EventKind(row.kind))
