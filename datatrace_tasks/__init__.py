"""DataTrace for Prefect: resumable, observable, concurrency-limited sync tasks."""

from datatrace_tasks.exceptions import (
    ConfigError,
    DatabaseUnreachable,
    DataTraceError,
    DuplicateUnitName,
    InvalidIdentifier,
    InvalidUnitId,
    JobFileInvalid,
    SchemaIncompatible,
    SubscriberCutOff,
    TableNotFound,
    TableUnsupported,
    TaskAlreadyRunning,
    TaskNotFound,
    TaskStateConflict,
    UnitAlreadyRunning,
    UnitNotFound,
    UnitPaused,
    VerificationFailed,
)
from datatrace_tasks.live.progress import ProgressMonitor, UnitUpdate
from datatrace_tasks.live.rollup import TaskRollup
from datatrace_tasks.orchestration.lifecycle import RunOutcome
from datatrace_tasks.orchestration.manager import TaskManager
from datatrace_tasks.settings import ApiSettings, DataTraceSettings
from datatrace_tasks.state.cache import UnitCache
from datatrace_tasks.state.reporter import ProcessFn, ProgressReporter, UnitReporter
from datatrace_tasks.state.store import Store, SyncTask, UnitEvent
from datatrace_tasks.state.units import EventKind, TaskStatus, TaskUnit, UnitStatus

__all__ = [
    "ApiSettings",
    "ConfigError",
    "DataTraceError",
    "DataTraceSettings",
    "DatabaseUnreachable",
    "DuplicateUnitName",
    "EventKind",
    "InvalidIdentifier",
    "InvalidUnitId",
    "JobFileInvalid",
    "ProcessFn",
    "ProgressMonitor",
    "ProgressReporter",
    "RunOutcome",
    "SchemaIncompatible",
    "Store",
    "SubscriberCutOff",
    "SyncTask",
    "TableNotFound",
    "TableUnsupported",
    "TaskAlreadyRunning",
    "TaskManager",
    "TaskNotFound",
    "TaskRollup",
    "TaskStateConflict",
    "TaskStatus",
    "TaskUnit",
    "UnitAlreadyRunning",
    "UnitCache",
    "UnitEvent",
    "UnitNotFound",
    "UnitPaused",
    "UnitReporter",
    "UnitStatus",
    "UnitUpdate",
    "VerificationFailed",
]
