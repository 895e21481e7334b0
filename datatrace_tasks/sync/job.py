"""The job file: what to copy from where to where, and how (issue 3)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from datatrace_tasks.exceptions import JobFileInvalid

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

WriteMode = Literal["upsert", "append", "truncate"]
ErrorStrategy = Literal["skip", "pause"]
SyncMode = Literal["full", "incremental", "differential"]


def mask_url(url: URL) -> str:
    """The URL as people may see it: `user:***@host`, never the password."""
    return url.render_as_string(hide_password=True)


def check_modes(mode: str, write_mode: str, cursor: str | None) -> None:
    """The rules a sync mode puts on the other settings, for the job and for each table."""
    if mode != "full" and write_mode != "upsert":
        raise ValueError(
            f"mode: {mode} needs write_mode: upsert (got {write_mode}): it"
            " rewrites rows that are on the target already"
        )
    if mode == "incremental" and cursor is None:
        raise ValueError("mode: incremental needs cursor: the column that grows on change")
    if mode != "incremental" and cursor is not None:
        raise ValueError(f"cursor is used by mode: incremental only (mode is {mode})")


class TableSettings(BaseModel):
    """What one table of a job does differently from the job (the job file's
    `table_settings: {TABLE: {...}}`); a key left out keeps the job's value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    where: str | None = Field(
        default=None,
        min_length=1,
        description="A row filter: an SQL condition on the source table's columns, run on"
        " the source as written; only matching rows are copied and verified, and the"
        " target table holds exactly those.",
    )
    columns: list[str] | None = Field(
        default=None, min_length=1, description="Copy only these columns (the key always)."
    )
    exclude_columns: list[str] | None = Field(
        default=None, min_length=1, description="Copy every column but these."
    )
    target: str | None = Field(
        default=None, min_length=1, description="The target table's name; default: the same."
    )
    mode: SyncMode | None = None
    cursor: str | None = Field(default=None, min_length=1)
    lookback: float | None = Field(default=None, ge=0)
    write_mode: WriteMode | None = None

    @model_validator(mode="after")
    def _one_column_list(self) -> TableSettings:
        if self.columns is not None and self.exclude_columns is not None:
            raise ValueError("give columns or exclude_columns, not both")
        return self


def _parse_url(raw: str, field: str) -> URL:
    try:
        return make_url(raw)
    except (ArgumentError, ValueError) as exc:
        # The raw string may hold a password: name the field, not the value.
        raise ValueError(f"{field} is not a valid SQLAlchemy URL") from exc


class Job(BaseModel):
    """A validated sync job; database URLs are secrets and show masked.

    Example:
        >>> job = load_job("sakila.yaml")
        >>> job.masked_source
        'mysql+pymysql://app:***@db1:3306/sakila'
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="Name of the sync task people see.")
    source: SecretStr = Field(description="SQLAlchemy URL of the source MySQL schema.")
    target: SecretStr = Field(description="SQLAlchemy URL of the target database.")
    tables: list[str] = Field(default=["*"], min_length=1, description='Names, or ["*"].')
    include: list[str] | None = Field(default=None, description="fnmatch patterns to keep.")
    exclude: list[str] | None = Field(default=None, description="fnmatch patterns to drop.")
    concurrency: int = Field(default=4, ge=1, description="Units copied at the same time.")
    batch_size: int = Field(default=5000, ge=1, description="Rows per read and per commit.")
    error_strategy: ErrorStrategy = Field(default="skip", description="On unit failure.")
    retries: int = Field(default=2, ge=0, description="Extra attempts for transient errors.")
    write_mode: WriteMode = Field(default="upsert", description="How rows land on the target.")
    mode: SyncMode = Field(
        default="full",
        description="full: copy every row; differential: compare source and target key"
        " bucket by bucket, re-copy the rows that differ, delete the rows gone from the"
        " source, verify; incremental: upsert the rows whose `cursor` reached the last"
        " verified run's mark minus `lookback` (deletes are not seen). A table the target"
        " does not hold yet, or holds empty, is copied in full.",
    )
    cursor: str | None = Field(
        default=None,
        min_length=1,
        description="mode incremental: the column that grows with every insert and update"
        " (a DATETIME, TIMESTAMP, DATE or integer column).",
    )
    lookback: float = Field(
        default=5,
        ge=0,
        description="mode incremental: how far before the last mark to start again, for"
        " transactions that commit late: seconds for a date or time cursor, values for an"
        " integer one.",
    )
    ranges: int | None = Field(
        default=None,
        ge=1,
        description="Key ranges of one table copied at once, each with its own checkpoint;"
        " None: up to 3, by table size.",
    )
    throttle_rows_per_second: float | None = Field(
        default=None, gt=0, description="Cap on rows per second per unit; None: no cap."
    )
    table_settings: dict[str, TableSettings] = Field(
        default_factory=dict,
        description="Per table (by its source name): a row filter, the columns, the target"
        " name, and the mode, cursor, lookback or write mode where they differ from the"
        " job's.",
    )

    @model_validator(mode="after")
    def _mode_writes(self) -> Job:
        check_modes(self.mode, self.write_mode, self.cursor)
        targets: dict[str, str] = {}
        for name, settings in self.table_settings.items():
            job = self.for_table(name)
            try:
                check_modes(job.mode, job.write_mode, job.cursor)
            except ValueError as exc:
                raise ValueError(f"table_settings.{name}: {exc}") from None
            target = settings.target or name
            if target in targets:
                raise ValueError(
                    f"table_settings: tables {targets[target]!r} and {name!r} both write"
                    f" to target table {target!r}"
                )
            targets[target] = name
        return self

    def for_table(self, name: str) -> Job:
        """The job as table `name` runs it: its mode, cursor, lookback and write mode
        from `table_settings` where it has them (one table's cursor needs not be
        another's); the job itself when it has none."""
        settings = self.table_settings.get(name)
        if settings is None:
            return self
        changes = settings.model_dump(
            include={"mode", "cursor", "lookback", "write_mode"}, exclude_none=True
        )
        if settings.mode is not None and settings.mode != "incremental":
            changes.setdefault("cursor", None)
        return self.model_copy(update=changes)

    @field_validator("source", "target")
    @classmethod
    def _valid_url(cls, value: SecretStr, info: Any) -> SecretStr:
        _parse_url(value.get_secret_value(), info.field_name)
        return value

    @property
    def source_url(self) -> URL:
        """The source URL, password included: for connecting only."""
        return make_url(self.source.get_secret_value())

    @property
    def target_url(self) -> URL:
        """The target URL, password included: for connecting only."""
        return make_url(self.target.get_secret_value())

    @property
    def masked_source(self) -> str:
        """The source URL with the password shown as `***`."""
        return mask_url(self.source_url)

    @property
    def masked_dict(self) -> dict[str, Any]:
        """The job as plain data with its URLs masked: safe to store, log or send away."""
        data = self.model_dump(mode="json")
        data["source"] = self.masked_source
        data["target"] = self.masked_target
        return data

    @property
    def masked_target(self) -> str:
        """The target URL with the password shown as `***`."""
        return mask_url(self.target_url)


def expand_env(text: str, *, where: str, env: dict[str, str] | None = None) -> str:
    """Replace each `${VAR}` by its environment value; a missing one is an error naming it."""
    environ = os.environ if env is None else env

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise JobFileInvalid(f"{where}: environment variable {name} is not set")
        return environ[name]

    return _VAR.sub(sub, text)


def _describe(error: Any) -> str:
    loc = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"unknown key {loc!r}"
    msg = str(error["msg"]).removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg


def job_from_dict(data: Any, *, where: str = "job") -> Job:
    """Validate a parsed job mapping, expanding `${VAR}` in `source` and `target`."""
    if not isinstance(data, dict):
        raise JobFileInvalid(f"{where}: expected a mapping of keys, got {type(data).__name__}")
    data = dict(data)
    for key in ("source", "target"):
        if isinstance(data.get(key), str):
            data[key] = expand_env(data[key], where=f"{where}: {key}")
    try:
        return Job.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_describe(err) for err in exc.errors())
        raise JobFileInvalid(f"{where}: {problems}") from None


def load_job(path: str | Path) -> Job:
    """Read and validate a YAML job file.

    Raises:
        JobFileInvalid: unreadable file, bad YAML, unknown keys, bad values or a
            missing environment variable; one message, passwords never shown.
    """
    where = f"job file {str(path)!r}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise JobFileInvalid(f"{where}: cannot read it ({exc.__class__.__name__}: {exc})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise JobFileInvalid(f"{where}: not valid YAML{at}: {problem}") from None
    return job_from_dict(data, where=where)
