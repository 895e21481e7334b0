"""Errors raised by DataTrace: one tree, one base class.

    DataTraceError
    ├── ConfigError              bad settings, arguments or job file
    │   ├── JobFileInvalid
    │   ├── DuplicateUnitName    two units of one task share an id
    │   └── InvalidUnitId        a unit id that is empty or too long
    ├── TaskNotFound
    ├── UnitNotFound
    ├── InvalidIdentifier        a table/column name that is not in the catalog
    │   └── TableNotFound
    ├── TableUnsupported         a table the copy engine refuses (e.g. no usable key)
    ├── SchemaIncompatible       target table cannot take the source rows
    ├── DatabaseUnreachable      connect or auth failure (transient)
    ├── TaskAlreadyRunning       another live runner holds the task
    │   └── UnitAlreadyRunning   another live runner holds the unit
    ├── TaskStateConflict        the task's state does not allow the action
    ├── UnitPaused               a unit stopped at a batch boundary on request
    ├── VerificationFailed
    └── SubscriberCutOff         a live-event subscriber fell too far behind

`transient` says whether another attempt may succeed; the retry policy asks the
error itself (as dlt does) instead of keeping a list of types.
"""

from __future__ import annotations


class DataTraceError(Exception):
    """Base class of every error DataTrace raises on purpose."""

    transient: bool = False


class ConfigError(DataTraceError):
    """Settings or arguments that cannot work."""


class JobFileInvalid(ConfigError):
    """A job file that cannot be read, parsed or validated."""


class TaskNotFound(DataTraceError):
    """No sync task with that id in the store."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"sync task {task_id!r} not found")
        self.task_id = task_id


class UnitNotFound(DataTraceError):
    """No unit with that id in the task."""

    def __init__(self, task_id: str, unit_id: str) -> None:
        super().__init__(f"unit {unit_id!r} not found in sync task {task_id!r}")
        self.task_id = task_id
        self.unit_id = unit_id


class DuplicateUnitName(ConfigError):
    """Two units of one task would share an id."""


class InvalidUnitId(ConfigError):
    """A unit id or name that is empty or longer than the store's column."""


class InvalidIdentifier(DataTraceError):
    """A table or column name that the source catalog does not know."""


class TableNotFound(InvalidIdentifier):
    """A table asked for that is not in the source schema."""


class SchemaIncompatible(DataTraceError):
    """An existing target table whose columns cannot take the source rows."""


class DatabaseUnreachable(DataTraceError):
    """Connecting or authenticating to a database failed; the URL is shown masked."""

    transient = True


class TaskAlreadyRunning(DataTraceError):
    """Another live runner holds the task."""


class UnitPaused(DataTraceError):
    """A unit stopped at a batch boundary because a pause was requested."""

    def __init__(self, message: str, *, started: bool = True) -> None:
        super().__init__(message)
        self.started = started


class VerificationFailed(DataTraceError):
    """Target rows differ from the source after a copy.

    `differences` (when verification found them row by row) says which rows: the
    sync engine's `Differences`, used by a resume to re-copy just those.
    """

    def __init__(self, message: str, differences: object = None) -> None:
        super().__init__(message)
        self.differences = differences


class TableUnsupported(DataTraceError):
    """A source table the copy engine refuses to copy; the message says why."""


class UnitAlreadyRunning(TaskAlreadyRunning):
    """Another live runner holds the unit's lease; this attempt must not copy it too."""


class TaskStateConflict(DataTraceError):
    """The task's state does not allow the action (pause a finished task, nothing to retry)."""


class SubscriberCutOff(DataTraceError):
    """A subscriber's queue overflowed: it must reconnect and replay from its last id."""
