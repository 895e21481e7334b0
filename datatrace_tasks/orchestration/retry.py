"""Which failures deserve another attempt: transient vs terminal, asked of the error.

DataTrace's own errors say so themselves (`transient`, as dlt does); database
driver errors are sorted by class; anything else is retried, bounded by the job's
`retries`.
"""

from __future__ import annotations

import importlib
from typing import Any

from sqlalchemy import exc as sa_exc

from datatrace_tasks.exceptions import DataTraceError
from datatrace_tasks.orchestration.hooks import state_exception

_TRANSIENT_DB_ERRORS: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError,  # lost connection, server gone away, lock wait timeout, deadlock
    sa_exc.InterfaceError,  # the driver's connection is unusable
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,  # no pooled connection became free in time
    ConnectionError,
    TimeoutError,
)
_TERMINAL_DB_ERRORS: tuple[type[BaseException], ...] = (
    sa_exc.IntegrityError,  # the data breaks a constraint: the same rows fail again
    sa_exc.ProgrammingError,  # bad SQL, missing table or column, no privilege
    sa_exc.DataError,
    sa_exc.NotSupportedError,
)


def _driver_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """The DB-API drivers' own connection errors, for code that calls a driver directly."""
    transient: list[type[BaseException]] = []
    terminal: list[type[BaseException]] = []
    for module_name in ("pymysql.err", "psycopg"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        transient += [module.OperationalError, module.InterfaceError]
        terminal += [module.IntegrityError, module.ProgrammingError, module.DataError]
    return tuple(transient), tuple(terminal)


_DRIVER_TRANSIENT, _DRIVER_TERMINAL = _driver_errors()


def is_transient(exc: BaseException) -> bool:
    """Whether another attempt of a unit that raised `exc` may succeed.

    DataTrace's own errors say so themselves (`transient`). Lost connections,
    timeouts and deadlocks (SQLAlchemy `OperationalError`/`InterfaceError`, and the
    pymysql/psycopg errors they wrap) are transient; constraint violations and bad
    SQL (`IntegrityError`, `ProgrammingError`, `DataError`) are terminal. Any other
    error is retried, as before: the retry count bounds it.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DataTraceError):
            return current.transient
        if isinstance(current, _TERMINAL_DB_ERRORS + _DRIVER_TERMINAL):
            return False
        if isinstance(current, _TRANSIENT_DB_ERRORS + _DRIVER_TRANSIENT):
            return True
        current = current.__cause__ or current.__context__
    return True


def retryable(_task: Any, _task_run: Any, state: Any) -> bool:
    """Prefect's retry condition: retry only what `is_transient` accepts (never a pause)."""
    exc = state_exception(state)
    if exc is None:
        return True
    return is_transient(exc)
