"""The state store: `sync_tasks`, `task_unit_runtimes` and `task_unit_events` over SQLAlchemy.

Every write is one short transaction, so many unit threads (or processes, or hosts)
can share one store; each status change and each progress write appends an event,
whose growing id lets the SSE side-app replay what a client missed.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, func, or_, select, update
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from datatrace_tasks.exceptions import (
    DatabaseUnreachable,
    DuplicateUnitName,
    TaskAlreadyRunning,
    TaskNotFound,
    UnitNotFound,
)
from datatrace_tasks.state.models import (
    UNIT_ID_LENGTH,
    SyncTaskRow,
    TaskUnitEventRow,
    TaskUnitRuntimeRow,
    utcnow,
)
from datatrace_tasks.state.units import TaskUnit, UnitStatus, percentage
from datatrace_tasks.urls import describe, mask_text, mask_url, parse_url

_MIGRATIONS = Path(__file__).parent / "migrations"
_migrated: set[str] = set()
_migrate_lock = threading.Lock()


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


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers (the dashboard) run while unit threads write.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for the store's URL, tuned per backend for many short transactions."""
    parsed = parse_url(url)
    backend = parsed.get_backend_name()
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 60, "check_same_thread": False}
    elif backend in ("mysql", "mariadb"):
        # READ COMMITTED: no gap locks between unit threads updating their own rows.
        kwargs.update(isolation_level="READ COMMITTED", pool_size=10, max_overflow=40)
        kwargs["connect_args"] = {"connect_timeout": 10}
    elif backend == "postgresql":
        kwargs.update(pool_size=10, max_overflow=40)
        kwargs["connect_args"] = {"connect_timeout": 10}
    engine = create_engine(parsed, **kwargs)
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def unreachable(url: str, exc: BaseException) -> DatabaseUnreachable:
    """One readable error naming the database, with every password masked."""
    reason = getattr(exc, "orig", None) or exc
    return DatabaseUnreachable(
        f"cannot use {describe(url)} ({mask_url(url)}): {mask_text(str(reason))}"
    )


class Store:
    """Reads and writes sync tasks, units and events; migrates its schema on first use.

    Args:
        url: SQLAlchemy URL. SQLite, MySQL/MariaDB (`mysql+pymysql://`) and PostgreSQL
            (`postgresql+psycopg://`) are supported.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.migrate()

    def __repr__(self) -> str:
        return f"Store({mask_url(self.url)!r})"

    @property
    def masked_url(self) -> str:
        """The URL as it may be shown."""
        return mask_url(self.url)

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (once per URL and process)."""
        with _migrate_lock:
            if self.url in _migrated:
                return
            config = Config()
            config.set_main_option("script_location", str(_MIGRATIONS))
            try:
                with self.engine.begin() as connection:
                    config.attributes["connection"] = connection
                    command.upgrade(config, "head")
            except (OperationalError, DBAPIError) as exc:
                raise unreachable(self.url, exc) from exc
            _migrated.add(self.url)

    def dispose(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed on success, rolled back on error."""
        try:
            with self._sessions.begin() as session:
                yield session
        except OperationalError as exc:
            if exc.connection_invalidated or "connect" in str(exc.orig).lower():
                raise unreachable(self.url, exc) from exc
            raise

    # -- tasks -------------------------------------------------------------------------

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
        """
        seen: set[str] = set()
        for unit_id, unit_name in units:
            if unit_id in seen:
                raise DuplicateUnitName(f"unit {unit_id!r} appears twice in task {name!r}")
            if not unit_id or len(unit_id) > UNIT_ID_LENGTH or len(unit_name) > UNIT_ID_LENGTH:
                raise DuplicateUnitName(
                    f"unit id {unit_id[:40]!r} must be 1 to {UNIT_ID_LENGTH} characters"
                )
            seen.add(unit_id)
        totals = totals or {}
        task_id = task_id or str(uuid.uuid4())
        now = utcnow()
        with self.session() as s:
            s.add(
                SyncTaskRow(
                    id=task_id,
                    name=name,
                    status="pending",
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
            )
            s.flush()
            for position, (unit_id, unit_name) in enumerate(units):
                total = int(totals.get(unit_id, 0))
                s.add(
                    TaskUnitRuntimeRow(
                        task_id=task_id,
                        unit_id=unit_id,
                        name=unit_name,
                        position=position,
                        status=UnitStatus.PENDING.value,
                        total_records=total,
                        processed_records=0,
                        percentage=0.0,
                        error_message="",
                        attempts=0,
                        updated_at=now,
                    )
                )
            s.add(
                TaskUnitEventRow(
                    task_id=task_id,
                    unit_id=None,
                    kind="task",
                    status="pending",
                    processed_records=0,
                    total_records=sum(int(totals.get(u, 0)) for u, _ in units),
                    message=f"created with {len(units)} units",
                    created_at=now,
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
            return _task(row)

    def list_tasks(self, *, limit: int = 100) -> list[SyncTask]:
        """Newest tasks first."""
        with self.session() as s:
            rows = s.scalars(
                select(SyncTaskRow).order_by(SyncTaskRow.created_at.desc()).limit(limit)
            )
            return [_task(r) for r in rows]

    def set_task_status(self, task_id: str, status: str, message: str = "") -> None:
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
            s.add(
                TaskUnitEventRow(
                    task_id=task_id,
                    unit_id=None,
                    kind="task",
                    status=status,
                    processed_records=int(counts[0]),
                    total_records=int(counts[1]),
                    message=message,
                    created_at=utcnow(),
                )
            )

    def claim_task(self, task_id: str, owner: str, *, lease_seconds: float) -> None:
        """Take the task for `owner`, unless another owner's lease is still fresh.

        One conditional UPDATE decides, so two runners racing on one store cannot
        both win. A crashed runner stops renewing; its lease expires and the task
        can be claimed (and its stale `running` units resumed) again.

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
                    or_(
                        SyncTaskRow.owner.is_(None),
                        SyncTaskRow.owner == owner,
                        SyncTaskRow.heartbeat_at.is_(None),
                        SyncTaskRow.heartbeat_at < stale,
                    ),
                )
                .values(owner=owner, heartbeat_at=now)
            ).rowcount  # type: ignore[attr-defined]
            if claimed:
                return
            row = s.get(SyncTaskRow, task_id)
            if row is None:
                raise TaskNotFound(task_id)
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

    # -- units -------------------------------------------------------------------------

    def load_units(self, task_id: str) -> list[TaskUnit]:
        """All units of a task in their original order.

        Raises:
            TaskNotFound: no such task.
        """
        with self.session() as s:
            if s.get(SyncTaskRow, task_id) is None:
                raise TaskNotFound(task_id)
            rows = s.scalars(
                select(TaskUnitRuntimeRow)
                .where(TaskUnitRuntimeRow.task_id == task_id)
                .order_by(TaskUnitRuntimeRow.position, TaskUnitRuntimeRow.id)
            )
            return [_unit(r) for r in rows]

    def unit_row(self, task_id: str, unit_id: str) -> dict[str, Any]:
        """Every column of one unit's runtime row (timestamps, verification included)."""
        with self.session() as s:
            row = s.scalar(
                select(TaskUnitRuntimeRow).where(
                    TaskUnitRuntimeRow.task_id == task_id, TaskUnitRuntimeRow.unit_id == unit_id
                )
            )
            if row is None:
                raise UnitNotFound(task_id, unit_id)
            return {c.key: getattr(row, c.key) for c in TaskUnitRuntimeRow.__table__.columns}

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
        attempts: int | None = None,
        event: str | None = None,
    ) -> int | None:
        """Update one unit's row and, when `event` names a kind, append an event.

        Returns:
            The new event's id, or None when no event was written.

        Raises:
            UnitNotFound: the task has no such unit.
        """
        now = utcnow()
        with self.session() as s:
            row = s.scalar(
                select(TaskUnitRuntimeRow)
                .where(TaskUnitRuntimeRow.task_id == task_id, TaskUnitRuntimeRow.unit_id == unit_id)
                .with_for_update()
            )
            if row is None:
                raise UnitNotFound(task_id, unit_id)
            if status is not None:
                row.status = status.value
                if status is UnitStatus.RUNNING:
                    row.started_at = row.started_at or now
                    row.finished_at = None
                elif status.is_final:
                    row.finished_at = now
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
            row.percentage = round(
                100.0
                if row.status == UnitStatus.COMPLETED and row.total_records == 0
                else percentage(row.processed_records, row.total_records),
                4,
            )
            row.updated_at = now
            if event is None:
                return None
            ev = TaskUnitEventRow(
                task_id=task_id,
                unit_id=unit_id,
                kind=event,
                status=row.status,
                processed_records=row.processed_records,
                total_records=row.total_records,
                message=row.error_message if row.status == UnitStatus.FAILED else "",
                created_at=now,
            )
            s.add(ev)
            s.flush()
            return ev.id

    def claim_unit(self, task_id: str, unit_id: str, owner: str, *, lease_seconds: float) -> bool:
        """Take the unit's lease for `owner` unless another owner's lease is unexpired.

        One conditional UPDATE decides, so runners on several hosts sharing one store
        never both win the same unit; a crashed runner's lease simply expires.

        Raises:
            UnitNotFound: the task has no such unit.
        """
        now = utcnow()
        with self.session() as s:
            won = s.execute(
                update(TaskUnitRuntimeRow)
                .where(
                    TaskUnitRuntimeRow.task_id == task_id,
                    TaskUnitRuntimeRow.unit_id == unit_id,
                    or_(
                        TaskUnitRuntimeRow.lease_owner.is_(None),
                        TaskUnitRuntimeRow.lease_owner == owner,
                        TaskUnitRuntimeRow.lease_expires_at.is_(None),
                        TaskUnitRuntimeRow.lease_expires_at < now,
                    ),
                )
                .values(lease_owner=owner, lease_expires_at=now + timedelta(seconds=lease_seconds))
            ).rowcount  # type: ignore[attr-defined]
            if won:
                return True
            exists = s.scalar(
                select(TaskUnitRuntimeRow.id).where(
                    TaskUnitRuntimeRow.task_id == task_id, TaskUnitRuntimeRow.unit_id == unit_id
                )
            )
            if exists is None:
                raise UnitNotFound(task_id, unit_id)
            return False

    def unit_lease_owner(self, task_id: str, unit_id: str) -> str | None:
        """Who holds the unit's lease now (None when free or expired)."""
        with self.session() as s:
            row = s.execute(
                select(TaskUnitRuntimeRow.lease_owner, TaskUnitRuntimeRow.lease_expires_at).where(
                    TaskUnitRuntimeRow.task_id == task_id, TaskUnitRuntimeRow.unit_id == unit_id
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
                    TaskUnitRuntimeRow.task_id == task_id,
                    TaskUnitRuntimeRow.unit_id == unit_id,
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
                    TaskUnitRuntimeRow.task_id == task_id,
                    TaskUnitRuntimeRow.unit_id == unit_id,
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

    # -- events ------------------------------------------------------------------------

    def events_after(
        self, last_id: int, *, task_id: str | None = None, limit: int = 1000
    ) -> list[UnitEvent]:
        """Events with an id above `last_id`, oldest first."""
        with self.session() as s:
            q = select(TaskUnitEventRow).where(TaskUnitEventRow.id > last_id)
            if task_id is not None:
                q = q.where(TaskUnitEventRow.task_id == task_id)
            rows = s.scalars(q.order_by(TaskUnitEventRow.id).limit(limit))
            return [
                UnitEvent(
                    id=r.id,
                    task_id=r.task_id,
                    unit_id=r.unit_id,
                    kind=r.kind,
                    status=r.status,
                    processed_records=r.processed_records,
                    total_records=r.total_records,
                    message=r.message,
                    created_at=r.created_at,
                )
                for r in rows
            ]


def _task(row: SyncTaskRow) -> SyncTask:
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


def _unit(row: TaskUnitRuntimeRow) -> TaskUnit:
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
