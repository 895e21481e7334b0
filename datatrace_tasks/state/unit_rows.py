"""The `task_unit_runtimes` table: each unit's status, progress, checkpoint and lease."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, Row, Table, bindparam, case, func, insert, select, update

from datatrace_tasks.exceptions import TaskNotFound, UnitAlreadyRunning, UnitNotFound
from datatrace_tasks.state.engine import StoreConnection
from datatrace_tasks.state.leases import LeaseChange, claimable, holder_is_gone
from datatrace_tasks.state.models import (
    SyncTaskRow,
    TaskUnitEventRow,
    TaskUnitRuntimeRow,
    utcnow,
)
from datatrace_tasks.state.records import unit_record
from datatrace_tasks.state.units import EventKind, TaskUnit, UnitStatus, percentage


class UnitRows(StoreConnection):
    """Reads and writes the units of sync tasks, and appends their events."""

    def load_units(self, task_id: str) -> list[TaskUnit]:
        """All units of a task in their original order.

        Raises:
            TaskNotFound: no such task.
        """
        return [unit for unit, _ in self.load_units_and_rows(task_id)]

    def load_units_and_rows(self, task_id: str) -> list[tuple[TaskUnit, dict[str, Any]]]:
        """Each unit with every column of its row (timestamps, verification), in one query.

        Raises:
            TaskNotFound: no such task.
        """
        # Core rows, not ORM objects: a run reads all its units a few times, and a
        # task may have thousands.
        with self.transaction() as c:
            rows = c.execute(_TASK_UNITS, {"task_id": task_id}).all()
            if not rows and c.execute(_TASK_EXISTS, {"task_id": task_id}).first() is None:
                raise TaskNotFound(task_id)
        return [(unit_record(r), r._asdict()) for r in rows]

    def rows_done(self, task_id: str) -> tuple[int, int, bool]:
        """The task's rows copied and rows in all (a unit past its estimate counts what it
        copied), and whether every unit is completed: one aggregate, no unit loaded.

        The Prefect progress artifact asks this every few seconds during a run; loading
        every unit instead held up the units' own writes on a SQLite store.
        """
        biggest = case(
            (_Row.total_records >= _Row.processed_records, _Row.total_records),
            else_=_Row.processed_records,
        )
        completed = case((_Row.status == UnitStatus.COMPLETED.value, 1), else_=0)
        with self.transaction() as c:
            done, total, units, finished = c.execute(
                select(
                    func.coalesce(func.sum(_Row.processed_records), 0),
                    func.coalesce(func.sum(biggest), 0),
                    func.count(),
                    func.coalesce(func.sum(completed), 0),
                ).where(_Row.task_id == task_id)
            ).one()
        return int(done), int(total), int(finished) == int(units)

    def unit_row(self, task_id: str, unit_id: str) -> dict[str, Any]:
        """Every column of one unit's runtime row (timestamps, verification included)."""
        with self.transaction() as c:
            row = c.execute(select(_UNITS).where(*_unit_is(task_id, unit_id))).one_or_none()
        if row is None:
            raise UnitNotFound(task_id, unit_id)
        return row._asdict()

    def write_unit(
        self,
        task_id: str,
        unit_id: str,
        *,
        status: UnitStatus | None = None,
        processed: int | None = None,
        total: int | None = None,
        error_message: str | None = None,
        checkpoint: Mapping[str, Any] | None = None,
        reset_checkpoint: bool = False,
        verification: Mapping[str, Any] | None = None,
        figures: Mapping[str, Any] | None = None,
        attempts: int | None = None,
        event: EventKind | None = None,
        lease: LeaseChange | None = None,
    ) -> int | None:
        """Update one unit's row and, when `event` names a kind, append an event.

        A `lease` is taken (or given back) in the same transaction; when another holder
        has it, nothing is written.

        Returns:
            The new event's id, or None when no event was written.

        Raises:
            UnitNotFound: the task has no such unit.
            UnitAlreadyRunning: the lease to take is another live holder's.
        """
        # Core statements, not the ORM: this is every unit's start and end, and the
        # ORM's unit of work was most of what a small unit cost beyond Prefect.
        with self.transaction() as c:
            found = c.execute(_READ, {"task_id": task_id, "unit_id": unit_id}).one_or_none()
            if found is None:
                raise UnitNotFound(task_id, unit_id)
            row = _Changes(found._asdict())
            if lease is not None and not lease.apply(row, utcnow()):
                raise _held(task_id, unit_id, row.lease_owner)
            if status is not None:
                _set_status(row, status)
            _set_fields(
                row,
                total=total,
                processed=processed,
                error_message=error_message,
                checkpoint=checkpoint,
                reset_checkpoint=reset_checkpoint,
                verification=verification,
                attempts=attempts,
            )
            if figures is not None:
                row.figures = dict(figures)
            c.execute(_UPDATE, {"row_id": found.id, **row.changed})
            if event is None:
                return None
            values = _unit_event(task_id, unit_id, row, event)
            added = c.execute(_ADD_EVENT, values)
            return int(cast(Row[Any], added.inserted_primary_key)[0])

    def claim_unit(self, task_id: str, unit_id: str, owner: str, *, lease_seconds: float) -> bool:
        """Take the unit's lease for `owner` unless another owner's lease is unexpired.

        One conditional UPDATE decides, so runners on several hosts sharing one store
        never both win the same unit; a crashed runner's lease simply expires, and one
        held by a process of this host that no longer exists is taken over at once.

        Raises:
            UnitNotFound: the task has no such unit.
        """
        now = utcnow()
        with self.session() as s:
            lease = {
                "lease_owner": owner,
                "lease_expires_at": now + timedelta(seconds=lease_seconds),
            }
            free = claimable(_Row.lease_owner, _Row.lease_expires_at, owner, now)
            won = s.execute(update(_Row).where(*_unit_is(task_id, unit_id), free).values(**lease))
            if won.rowcount:  # type: ignore[attr-defined]
                return True
            holder = s.execute(
                select(_Row.id, _Row.lease_owner).where(*_unit_is(task_id, unit_id))
            ).one_or_none()
            if holder is None:
                raise UnitNotFound(task_id, unit_id)
            if holder.lease_owner is None or not holder_is_gone(holder.lease_owner):
                return False
            gone = _Row.lease_owner == holder.lease_owner
            took = s.execute(update(_Row).where(*_unit_is(task_id, unit_id), gone).values(**lease))
            return bool(took.rowcount)  # type: ignore[attr-defined]

    def unit_lease_owner(self, task_id: str, unit_id: str) -> str | None:
        """Who holds the unit's lease now (None when free or expired)."""
        with self.session() as s:
            row = s.execute(
                select(TaskUnitRuntimeRow.lease_owner, TaskUnitRuntimeRow.lease_expires_at).where(
                    *_unit_is(task_id, unit_id)
                )
            ).one_or_none()
            if row is None:
                raise UnitNotFound(task_id, unit_id)
            owner, expires = row
            return owner if owner and expires is not None and expires >= utcnow() else None

    def renew_unit(self, task_id: str, unit_id: str, owner: str, *, lease_seconds: float) -> bool:
        """Extend `owner`'s unit lease; False if someone else holds the unit now."""
        with self.session() as s:
            n = s.execute(
                update(TaskUnitRuntimeRow)
                .where(
                    *_unit_is(task_id, unit_id),
                    TaskUnitRuntimeRow.lease_owner == owner,
                )
                .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
            ).rowcount  # type: ignore[attr-defined]
            return bool(n)

    def release_unit(self, task_id: str, unit_id: str, owner: str) -> None:
        """Give up `owner`'s lease on the unit (a no-op if it no longer holds it)."""
        with self.session() as s:
            s.execute(
                update(TaskUnitRuntimeRow)
                .where(
                    *_unit_is(task_id, unit_id),
                    TaskUnitRuntimeRow.lease_owner == owner,
                )
                .values(lease_owner=None, lease_expires_at=None)
            )

    def reset_units(self, task_id: str, unit_ids: Sequence[str]) -> None:
        """Make failed units runnable again from their checkpoint (retry-failed)."""
        with self.session() as s:
            s.execute(
                update(TaskUnitRuntimeRow)
                .where(
                    TaskUnitRuntimeRow.task_id == task_id,
                    TaskUnitRuntimeRow.unit_id.in_(list(unit_ids)),
                )
                .values(status=UnitStatus.PENDING.value, error_message="", updated_at=utcnow())
            )


_Row = TaskUnitRuntimeRow


def _unit_is(task_id: str, unit_id: str) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    """The WHERE terms that pick one unit's row."""
    return TaskUnitRuntimeRow.task_id == task_id, TaskUnitRuntimeRow.unit_id == unit_id


def _held(task_id: str, unit_id: str, holder: str) -> UnitAlreadyRunning:
    return UnitAlreadyRunning(
        f"unit {unit_id!r} of sync task {task_id!r} is already running in {holder}"
    )


def _unit_event(task_id: str, unit_id: str, row: Any, kind: EventKind) -> dict[str, Any]:
    """The event that records a unit's row as it is now."""
    return {
        "task_id": task_id,
        "unit_id": unit_id,
        "kind": kind,
        "status": row.status,
        "processed_records": row.processed_records,
        "total_records": row.total_records,
        "message": row.error_message if row.status == UnitStatus.FAILED else "",
        "created_at": row.updated_at,
    }


# Statements built once: the columns a write reads back (what the new values and the
# event are made from), the update whose SET clause is the parameters it is given,
# and the event log.
_UNITS = cast(Table, TaskUnitRuntimeRow.__table__)
_EVENTS = cast(Table, TaskUnitEventRow.__table__)
_READ = (
    select(
        *(
            _UNITS.c[name]
            for name in (
                "id",
                "status",
                "total_records",
                "processed_records",
                "error_message",
                "started_at",
                "lease_owner",
                "lease_expires_at",
            )
        )
    )
    .where(_UNITS.c.task_id == bindparam("task_id"), _UNITS.c.unit_id == bindparam("unit_id"))
    .with_for_update()
)
_UPDATE = update(_UNITS).where(_UNITS.c.id == bindparam("row_id"))
_ADD_EVENT = insert(_EVENTS)
_TASK_UNITS = (
    select(_UNITS)
    .where(_UNITS.c.task_id == bindparam("task_id"))
    .order_by(_UNITS.c.position, _UNITS.c.id)
)
_TASK_EXISTS = select(SyncTaskRow.id).where(SyncTaskRow.id == bindparam("task_id"))


class _Changes:
    """A unit row's columns as read, and the ones a write set (`changed`)."""

    changed: dict[str, Any]

    def __init__(self, read: dict[str, Any]) -> None:
        self.__dict__.update(read)
        self.__dict__["changed"] = {}

    def __getattr__(self, name: str) -> Any:  # only a column not read gets here
        raise AttributeError(name)

    def __setattr__(self, name: str, value: Any) -> None:
        self.__dict__[name] = value
        self.changed[name] = value


def _set_status(row: Any, status: UnitStatus) -> None:
    """A unit's status, with when it started (first run) and when it came to rest."""
    row.status = status.value
    if status is UnitStatus.RUNNING:
        row.started_at = row.started_at or utcnow()
        row.finished_at = None
    elif status.is_final:
        row.finished_at = utcnow()


def _set_fields(
    row: Any,
    *,
    total: int | None,
    processed: int | None,
    error_message: str | None,
    checkpoint: Mapping[str, Any] | None,
    reset_checkpoint: bool,
    verification: Mapping[str, Any] | None,
    attempts: int | None,
) -> None:
    """Every field given (None: keep), then the percentage they make."""
    if total is not None:
        row.total_records = total
    if processed is not None:
        row.processed_records = processed
    if error_message is not None:
        row.error_message = error_message
    if checkpoint is not None:
        row.checkpoint = dict(checkpoint)
    elif reset_checkpoint:
        row.checkpoint = None
    if verification is not None:
        row.verification = dict(verification)
    if attempts is not None:
        row.attempts = attempts
    completed_empty = row.status == UnitStatus.COMPLETED and row.total_records == 0
    row.percentage = round(
        100.0 if completed_empty else percentage(row.processed_records, row.total_records), 4
    )
    row.updated_at = utcnow()
