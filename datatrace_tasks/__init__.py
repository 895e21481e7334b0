"""DataTrace for Prefect: resumable, observable, concurrency-limited sync tasks.

The public names are imported on first use (PEP 562), so `datatrace --help` and
Prefect's collection loading do not pay for the whole library.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    from datatrace_tasks.orchestration.manager import TaskManager
    from datatrace_tasks.settings import ApiSettings, DataTraceSettings
    from datatrace_tasks.state.cache import UnitCache
    from datatrace_tasks.state.outcome import RunOutcome
    from datatrace_tasks.state.reporter import ProcessFn, ProgressReporter, UnitReporter
    from datatrace_tasks.state.store import Store, SyncTask, UnitEvent
    from datatrace_tasks.state.units import EventKind, TaskStatus, TaskUnit, UnitStatus

_EXPORTS: dict[str, str] = {
    "ApiSettings": "datatrace_tasks.settings",
    "ConfigError": "datatrace_tasks.exceptions",
    "DataTraceError": "datatrace_tasks.exceptions",
    "DataTraceSettings": "datatrace_tasks.settings",
    "DatabaseUnreachable": "datatrace_tasks.exceptions",
    "DuplicateUnitName": "datatrace_tasks.exceptions",
    "EventKind": "datatrace_tasks.state.units",
    "InvalidIdentifier": "datatrace_tasks.exceptions",
    "InvalidUnitId": "datatrace_tasks.exceptions",
    "JobFileInvalid": "datatrace_tasks.exceptions",
    "ProcessFn": "datatrace_tasks.state.reporter",
    "ProgressMonitor": "datatrace_tasks.live.progress",
    "ProgressReporter": "datatrace_tasks.state.reporter",
    "RunOutcome": "datatrace_tasks.state.outcome",
    "SchemaIncompatible": "datatrace_tasks.exceptions",
    "Store": "datatrace_tasks.state.store",
    "SubscriberCutOff": "datatrace_tasks.exceptions",
    "SyncTask": "datatrace_tasks.state.store",
    "TableNotFound": "datatrace_tasks.exceptions",
    "TableUnsupported": "datatrace_tasks.exceptions",
    "TaskAlreadyRunning": "datatrace_tasks.exceptions",
    "TaskManager": "datatrace_tasks.orchestration.manager",
    "TaskNotFound": "datatrace_tasks.exceptions",
    "TaskRollup": "datatrace_tasks.live.rollup",
    "TaskStateConflict": "datatrace_tasks.exceptions",
    "TaskStatus": "datatrace_tasks.state.units",
    "TaskUnit": "datatrace_tasks.state.units",
    "UnitAlreadyRunning": "datatrace_tasks.exceptions",
    "UnitCache": "datatrace_tasks.state.cache",
    "UnitEvent": "datatrace_tasks.state.store",
    "UnitNotFound": "datatrace_tasks.exceptions",
    "UnitPaused": "datatrace_tasks.exceptions",
    "UnitReporter": "datatrace_tasks.state.reporter",
    "UnitStatus": "datatrace_tasks.state.units",
    "UnitUpdate": "datatrace_tasks.live.progress",
    "VerificationFailed": "datatrace_tasks.exceptions",
}

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


def __getattr__(name: str) -> Any:
    """Import a public name from its module the first time it is asked for."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'datatrace_tasks' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
