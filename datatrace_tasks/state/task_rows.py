"""The `sync_tasks` table: a task's settings, status, lease and pause flag."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from datatrace_tasks.exceptions import (
    DuplicateUnitName,
    InvalidUnitId,
    TaskAlreadyRunning,
    TaskNotFound,
)
from datatrace_tasks.state.engine import StoreConnection
from datatrace_tasks.state.leases import claimable, holder_is_gone
from datatrace_tasks.state.models import (
    UNIT_ID_LENGTH,
    SyncTaskRow,
    TaskUnitEventRow,
    TaskUnitRuntimeRow,
    utcnow,
)
from datatrace_tasks.state.records import SyncTask, task_record
from datatrace_tasks.state.units import EventKind, TaskStatus, UnitStatus
from datatrace_tasks.urls import mask_url


class TaskRows(StoreConnection):
    """Reads and writes sync tasks (and creates their units with them)."""

    def create_task(
        self,
        *,
        name: str,
        units: Sequence[tuple[str, str]],
        concurrency: int = 4,
        error_strategy: str = "skip",
        source: str = "",
        target: str = "",
        spec: Mapping[str, Any] | None = None,
        totals: Mapping[str, int] | None = None,
        task_id: str | None = None,
    ) -> str:
        """Create a task and its units (all `pending`) in one transaction; returns its id.

        Raises:
            DuplicateUnitName: two units share an id; nothing is written.
            InvalidUnitId: a unit id or name is empty or too long; nothing is written.
        """
        _check_units(name, units)
        totals = totals or {}
        task_id = task_id or str(uuid.uuid4())
        with self.session() as s:
            s.add(
                _task_row(
                    task_id,
                    name,
                    concurrency=concurrency,
                    error_strategy=error_strategy,
                    source=source,
                    target=target,
                    spec=spec,
                )
            )
            s.flush()
            _add_units(s, task_id, units, totals)
            s.add(
                _task_event(
                    task_id,
                    TaskStatus.PENDING,
                    f"created with {len(units)} units",
                    total=sum(int(totals.get(u, 0)) for u, _ in units),
                )
            )
        return task_id

    def get_task(self, task_id: str) -> SyncTask:
        """The task row.

        Raises:
            TaskNotFound: no such task.
        """
        with self.session() as s:
            row = s.get(SyncTaskRow, task_id)
            if row is None:
                raise TaskNotFound(task_id)
            return task_record(row)

    def list_tasks(self, *, limit: int = 100) -> list[SyncTask]:
        """Newest tasks first."""
        with self.session() as s:
            rows = s.scalars(
                select(SyncTaskRow).order_by(SyncTaskRow.created_at.desc()).limit(limit)
            )
            return [task_record(r) for r in rows]

    def set_task_status(self, task_id: str, status: TaskStatus, message: str = "") -> None:
        """Record the task's overall status and append a task event."""
        with self.session() as s:
            row = s.get(SyncTaskRow, task_id)
            if row is None:
                raise TaskNotFound(task_id)
            row.status = status
            row.message = message
            counts = s.execute(
                select(
                    func.coalesce(func.sum(TaskUnitRuntimeRow.processed_records), 0),
                    func.coalesce(func.sum(TaskUnitRuntimeRow.total_records), 0),
                ).where(TaskUnitRuntimeRow.task_id == task_id)
            ).one()
            s.add(_task_event(task_id, status, message, processed=counts[0], total=counts[1]))

    def record_flow_run(self, task_id: str, flow_run_id: str, url: str | None) -> None:
        """Keep the Prefect flow run that runs the task now (a run and each resume are
        one each), newest last in `spec["flow_runs"]`, with its UI address if known."""
        with self.session() as s:
            row = s.get(SyncTaskRow, task_id)
            if row is None:
                raise TaskNotFound(task_id)
            spec = dict(row.spec or {})
            spec["flow_runs"] = [*spec.get("flow_runs", []), {"id": flow_run_id, "url": url}]
            row.spec = spec

    def claim_task(self, task_id: str, owner: str, *, lease_seconds: float) -> None:
        """Take the task for `owner`, unless another owner's lease is still fresh.

        One conditional UPDATE decides, so two runners racing on one store cannot
        both win. A crashed runner stops renewing; its lease expires and the task
        can be claimed (and its stale `running` units resumed) again. A holder that is
        a process of this host that no longer exists is taken over at once.

        Raises:
            TaskNotFound: no such task.
            TaskAlreadyRunning: another live runner holds it (its name is given).
        """
        now = utcnow()
        stale = now - timedelta(seconds=lease_seconds)
        with self.session() as s:
            claimed = s.execute(
                update(SyncTaskRow)
                .where(
                    SyncTaskRow.id == task_id,
                    claimable(SyncTaskRow.owner, SyncTaskRow.heartbeat_at, owner, stale),
                )
                .values(owner=owner, heartbeat_at=now)
            ).rowcount  # type: ignore[attr-defined]
            if claimed:
                return
            row = s.get(SyncTaskRow, task_id)
            if row is None:
                raise TaskNotFound(task_id)
            if row.owner is not None and holder_is_gone(row.owner):
                took = s.execute(
                    update(SyncTaskRow)
                    .where(SyncTaskRow.id == task_id, SyncTaskRow.owner == row.owner)
                    .values(owner=owner, heartbeat_at=now)
                ).rowcount  # type: ignore[attr-defined]
                if took:
                    return
            seen = f"{row.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC" if row.heartbeat_at else "never"
            raise TaskAlreadyRunning(
                f"sync task {task_id!r} is already running in {row.owner} "
                f"(last heartbeat {seen}); wait for it, or pause it first"
            )

    def renew_claim(self, task_id: str, owner: str) -> bool:
        """Refresh `owner`'s lease; False if someone else took the task meanwhile."""
        with self.session() as s:
            n = s.execute(
                update(SyncTaskRow)
                .where(SyncTaskRow.id == task_id, SyncTaskRow.owner == owner)
                .values(heartbeat_at=utcnow())
            ).rowcount  # type: ignore[attr-defined]
            return bool(n)

    def release_task(self, task_id: str, owner: str) -> None:
        """Give up `owner`'s claim on the task."""
        with self.session() as s:
            s.execute(
                update(SyncTaskRow)
                .where(SyncTaskRow.id == task_id, SyncTaskRow.owner == owner)
                .values(owner=None, heartbeat_at=None)
            )

    def set_pause_requested(self, task_id: str, requested: bool) -> None:
        """Raise or lower the task's pause flag, which running units read at batch ends."""
        with self.session() as s:
            n = s.execute(
                update(SyncTaskRow)
                .where(SyncTaskRow.id == task_id)
                .values(pause_requested=requested, updated_at=utcnow())
            ).rowcount  # type: ignore[attr-defined]
            if not n:
                raise TaskNotFound(task_id)

    def pause_requested(self, task_id: str) -> bool:
        """Whether someone asked this task to pause."""
        with self.session() as s:
            flag = s.scalar(select(SyncTaskRow.pause_requested).where(SyncTaskRow.id == task_id))
            if flag is None:
                raise TaskNotFound(task_id)
            return bool(flag)


def _check_units(name: str, units: Sequence[tuple[str, str]]) -> None:
    """Refuse a unit list the table cannot hold, before anything is written."""
    seen: set[str] = set()
    for unit_id, unit_name in units:
        if unit_id in seen:
            raise DuplicateUnitName(f"unit {unit_id!r} appears twice in task {name!r}")
        if not unit_id or len(unit_id) > UNIT_ID_LENGTH or len(unit_name) > UNIT_ID_LENGTH:
            raise InvalidUnitId(
                f"unit id {unit_id[:40]!r} must be 1 to {UNIT_ID_LENGTH} characters"
            )
        seen.add(unit_id)


def _task_row(
    task_id: str,
    name: str,
    *,
    concurrency: int,
    error_strategy: str,
    source: str,
    target: str,
    spec: Mapping[str, Any] | None,
) -> SyncTaskRow:
    """A new task's row; its URLs are kept masked (the job file keeps the secrets)."""
    now = utcnow()
    return SyncTaskRow(
        id=task_id,
        name=name,
        status=TaskStatus.PENDING,
        concurrency=concurrency,
        error_strategy=error_strategy,
        source=mask_url(source) if source else "",
        target=mask_url(target) if target else "",
        spec=dict(spec) if spec else None,
        message="",
        pause_requested=False,
        created_at=now,
        updated_at=now,
    )


def _add_units(
    s: Session, task_id: str, units: Sequence[tuple[str, str]], totals: Mapping[str, int]
) -> None:
    """The task's units in one bulk INSERT: a task may have thousands of units."""
    if not units:
        return
    now = utcnow()
    rows = [
        {
            "task_id": task_id,
            "unit_id": unit_id,
            "name": unit_name,
            "position": position,
            "status": UnitStatus.PENDING.value,
            "total_records": int(totals.get(unit_id, 0)),
            "processed_records": 0,
            "percentage": 0.0,
            "error_message": "",
            "attempts": 0,
            "updated_at": now,
        }
        for position, (unit_id, unit_name) in enumerate(units)
    ]
    s.execute(insert(TaskUnitRuntimeRow), rows)  # SQLAlchemy 2 bulk INSERT, no unit of work


def _task_event(
    task_id: str, status: str, message: str, *, processed: int = 0, total: int = 0
) -> TaskUnitEventRow:
    """The event row a task's creation or status change appends."""
    return TaskUnitEventRow(
        task_id=task_id,
        unit_id=None,
        kind=EventKind.TASK,
        status=status,
        processed_records=int(processed),
        total_records=int(total),
        message=message,
        created_at=utcnow(),
    )
