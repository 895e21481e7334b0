"""Response models of the REST API: what the OpenAPI document shows."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class ErrorOut(BaseModel):
    """Every error answer."""

    detail: str = Field(description="What went wrong, readable by a person.")


class RollupOut(BaseModel):
    """A task at a glance."""

    units_by_status: dict[str, int] = Field(description="How many units are in each status.")
    processed_records: int = Field(description="Rows copied so far, all units.")
    total_records: int = Field(description="Rows to copy, all units (estimates until counted).")
    percentage: float = Field(description="processed / total in percent.")
    rows_per_second: float = Field(description="Speed over the last seconds, running units.")
    eta_seconds: float | None = Field(description="Seconds left at that speed; null: unknown.")


class JobRunOut(BaseModel):
    """One run of a job: its sync task and the sum of what its units did."""

    task_id: str
    name: str
    status: str = Field(description="pending, running, completed, failed or paused.")
    mode: str = Field(description="What the run did: full, incremental or differential.")
    created_at: datetime
    units: int
    completed: int = Field(description="Units that completed.")
    verified: int = Field(description="Units whose target verified equal to the source.")
    rows_read: int = Field(description="Rows read from the source in this run.")
    rows_written: int = Field(description="Rows written (upserted) on the target.")
    rows_deleted: int = Field(description="Rows deleted on the target (differential mode).")
    seconds: float | None = Field(description="First unit start to last unit end.")
    message: str
    flow_run_id: str | None = Field(description="The Prefect flow run that ran it last.")
    flow_run_url: str | None = Field(
        description="That flow run in the Prefect UI; null: the UI address was not known."
    )


class TaskOut(BaseModel):
    """A sync task as listed."""

    id: str
    name: str
    status: str = Field(description="pending, running, completed, failed or paused.")
    message: str = Field(description="The last status message (e.g. counts at the end).")
    pause_requested: bool = Field(description="A pause was asked and not yet cleared.")
    concurrency: int
    error_strategy: str
    source: str = Field(description="Source URL, password masked.")
    target: str = Field(description="Target URL, password masked.")
    created_at: datetime
    updated_at: datetime


class TaskDetailOut(TaskOut):
    """A sync task with its rollup."""

    rollup: RollupOut
    running_here: bool = Field(description="This app process is running the task now.")


class VerificationOut(BaseModel):
    """A unit's verification as the store keeps it: each server's own COUNT(*) and checksum."""

    ok: bool
    source_rows: int | None = Field(description="COUNT(*) on the source (of the window).")
    target_rows: int | None = Field(description="COUNT(*) on the target (of the window).")
    method: str | None
    scope: str | None = Field(description="The rows compared, when not all (incremental).")
    verified_at: str | None


class UnitOut(BaseModel):
    """One unit (table) of a task."""

    id: str
    name: str
    status: str
    processed_records: int
    total_records: int
    percentage: float
    rows_per_second: float = Field(description="Speed over the last seconds; 0 unless running.")
    eta_seconds: float | None = Field(description="Seconds left; 0 when completed, null unknown.")
    error_message: str
    attempts: int
    has_checkpoint: bool = Field(description="A resume continues from a saved position.")
    elapsed_seconds: float | None = Field(
        description="How long the unit's last run took (so far, while running); null: not run."
    )
    average_rows_per_second: float | None = Field(
        description="Rows of the last run over its elapsed time; null: not measurable."
    )
    rate_history: list[tuple[float, float]] = Field(
        description="The last run's rows/s over time: (seconds since it started, rows/s), at"
        " most 40 points."
    )
    verification: VerificationOut | None = Field(
        description="How the unit's target was verified; null: not (yet) verified."
    )


class UnitsOut(BaseModel):
    """A task's units, and where the event stream should continue from."""

    task_id: str
    last_event_id: int = Field(
        description=(
            "Every event up to this id is reflected in `units`: open the stream with "
            "`?last_event_id=` set to it to miss nothing."
        )
    )
    units: list[UnitOut]


class UnitRateOut(BaseModel):
    """The speed of one running unit, as a rollup event carries it."""

    id: str = Field(description="The unit's id.")
    rows_per_second: float = Field(description="Speed over the last seconds.")
    eta_seconds: float | None = Field(description="Seconds left at that speed; null: unknown.")


class RollupEventOut(BaseModel):
    """The data of a `rollup` event of a task's stream (asked for with `?rollup=true`)."""

    task_id: str
    last_event_id: int = Field(
        description="The stream's watermark when the figures were computed (not an event id)."
    )
    rollup: RollupOut
    units: list[UnitRateOut] = Field(
        description=(
            "The running units, the only ones with a speed; a unit not listed has no speed "
            "and no ETA now."
        )
    )


class ActionOut(BaseModel):
    """The answer to pause, resume and retry-failed."""

    task_id: str
    action: Literal["pause", "resume", "retry-failed"]
    accepted: bool = True
    detail: str
