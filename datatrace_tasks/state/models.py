"""SQLAlchemy models of the state store: sync tasks, their units, and the event log."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# MySQL DATETIME keeps whole seconds unless asked; SQLite only autoincrements INTEGER keys.
Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
EventId = BigInteger().with_variant(Integer(), "sqlite")
# utf8mb4 keys on MySQL are limited to 3072 bytes: keep the unique (task_id, unit_id) under it.
UNIT_ID_LENGTH = 255


def utcnow() -> datetime:
    """Naive UTC, the one form every backend stores alike."""
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    """Declarative base of the store models."""


class SyncTaskRow(Base):
    """One sync task: a job and the units it was split into."""

    __tablename__ = "sync_tasks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    concurrency: Mapped[int] = mapped_column(Integer, default=4)
    error_strategy: Mapped[str] = mapped_column(String(8), default="skip")
    source: Mapped[str] = mapped_column(String(1024), default="")  # masked
    target: Mapped[str] = mapped_column(String(1024), default="")  # masked
    spec: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")
    pause_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    owner: Mapped[str | None] = mapped_column(String(255), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, onupdate=utcnow)


class TaskUnitRuntimeRow(Base):
    """The runtime state of one unit: the row a resume starts from."""

    __tablename__ = "task_unit_runtimes"
    __table_args__ = (UniqueConstraint("task_id", "unit_id", name="uq_task_unit"),)

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("sync_tasks.id", ondelete="CASCADE"), index=True
    )
    unit_id: Mapped[str] = mapped_column(String(UNIT_ID_LENGTH))
    name: Mapped[str] = mapped_column(String(UNIT_ID_LENGTH))
    position: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    total_records: Mapped[int] = mapped_column(BigInteger, default=0)
    processed_records: Mapped[int] = mapped_column(BigInteger, default=0)
    percentage: Mapped[float] = mapped_column(Float, default=0.0)
    error_message: Mapped[str] = mapped_column(Text, default="")
    checkpoint: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    verification: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, onupdate=utcnow)
    # The unit lease (migration 0002): which runner copies the unit now, and until when.
    lease_owner: Mapped[str | None] = mapped_column(String(255), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    # What the unit's last run did (migration 0003): rows read, written, deleted, seconds.
    figures: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class TaskUnitEventRow(Base):
    """Append-only log of status changes and progress writes; `id` only grows."""

    __tablename__ = "task_unit_events"

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(String(36), index=True)
    unit_id: Mapped[str | None] = mapped_column(String(UNIT_ID_LENGTH), nullable=True)
    kind: Mapped[str] = mapped_column(String(16))  # "status", "progress" or "task"
    status: Mapped[str] = mapped_column(String(16))
    processed_records: Mapped[int] = mapped_column(BigInteger, default=0)
    total_records: Mapped[int] = mapped_column(BigInteger, default=0)
    message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
