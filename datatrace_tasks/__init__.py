"""DataTrace for Prefect: resumable, observable, concurrency-limited sync tasks."""

from datatrace_tasks.exceptions import (
    ConfigError,
    DatabaseUnreachable,
    DataTraceError,
    DuplicateUnitName,
    InvalidIdentifier,
    JobFileInvalid,
    SchemaIncompatible,
    TableNotFound,
    TaskAlreadyRunning,
    TaskNotFound,
    UnitNotFound,
    UnitPaused,
    VerificationFailed,
)
from datatrace_tasks.live.progress import ProgressMonitor, TaskRollup, UnitUpdate
from datatrace_tasks.orchestration.manager import TaskManager
from datatrace_tasks.settings import DataTraceSettings
from datatrace_tasks.state.reporter import ProcessFn, ProgressReporter, UnitReporter
from datatrace_tasks.state.store import Store, SyncTask, UnitEvent
from datatrace_tasks.state.units import TaskUnit, UnitStatus

__all__ = [
    "ConfigError",
    "DataTraceError",
    "DataTraceSettings",
    "DatabaseUnreachable",
    "DuplicateUnitName",
    "InvalidIdentifier",
    "JobFileInvalid",
    "ProcessFn",
    "ProgressMonitor",
    "ProgressReporter",
    "SchemaIncompatible",
    "Store",
    "SyncTask",
    "TableNotFound",
    "TaskAlreadyRunning",
    "TaskManager",
    "TaskNotFound",
    "TaskRollup",
    "TaskUnit",
    "UnitEvent",
    "UnitNotFound",
    "UnitPaused",
    "UnitReporter",
    "UnitStatus",
    "UnitUpdate",
    "VerificationFailed",
]
