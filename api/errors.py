"""How errors become HTTP answers: always JSON with a `detail`, never a bare 500."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from datatrace_tasks.exceptions import (
    ConfigError,
    DatabaseUnreachable,
    DataTraceError,
    TaskAlreadyRunning,
    TaskNotFound,
    TaskStateConflict,
    UnitNotFound,
)

log = logging.getLogger("datatrace.api")


_STATUS: list[tuple[type[DataTraceError], int]] = [
    (TaskNotFound, 404),
    (UnitNotFound, 404),
    (TaskAlreadyRunning, 409),
    (TaskStateConflict, 409),
    (ConfigError, 422),
    (DatabaseUnreachable, 503),
]


def status_for(exc: DataTraceError) -> int:
    """The HTTP status of a library error; an unlisted one is a conflict with the task state."""
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 409


def install(app: FastAPI) -> None:
    """Register the handlers on the app."""

    async def on_datatrace_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DataTraceError)
        return JSONResponse({"detail": str(exc)}, status_code=status_for(exc))

    async def on_unexpected(_request: Request, exc: Exception) -> JSONResponse:
        # A bug, not the client's fault: log it in full, answer without internals.
        log.exception("unexpected error", exc_info=exc)
        return JSONResponse({"detail": "internal error; see the side-app log"}, status_code=500)

    app.add_exception_handler(DataTraceError, on_datatrace_error)
    app.add_exception_handler(Exception, on_unexpected)
