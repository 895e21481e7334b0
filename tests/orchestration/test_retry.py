"""Which unit errors are retried: connection trouble yes, bad data and bad SQL never."""

from __future__ import annotations

from typing import Any

import psycopg
import pymysql
import pytest
from sqlalchemy import exc as sa_exc

from datatrace_tasks.exceptions import (
    ConfigError,
    DatabaseUnreachable,
    SchemaIncompatible,
    UnitPaused,
)
from datatrace_tasks.orchestration.manager import TaskManager
from datatrace_tasks.orchestration.retry import is_transient
from datatrace_tasks.state.units import UnitStatus


def _wrapped(cls: type[sa_exc.DBAPIError], orig: BaseException) -> BaseException:
    return cls("SELECT 1", {}, orig)


TRANSIENT = [
    _wrapped(sa_exc.OperationalError, pymysql.err.OperationalError(2013, "Lost connection")),
    _wrapped(sa_exc.InterfaceError, pymysql.err.InterfaceError(0, "")),
    _wrapped(sa_exc.OperationalError, psycopg.OperationalError("server closed the connection")),
    pymysql.err.OperationalError(2003, "Can't connect to MySQL server"),
    psycopg.InterfaceError("connection already closed"),
    DatabaseUnreachable("cannot use MariaDB at db1"),
    ConnectionResetError("reset by peer"),
]
TERMINAL = [
    _wrapped(sa_exc.IntegrityError, pymysql.err.IntegrityError(1062, "Duplicate entry")),
    _wrapped(sa_exc.ProgrammingError, psycopg.ProgrammingError('relation "x" does not exist')),
    _wrapped(sa_exc.DataError, pymysql.err.DataError(1406, "Data too long")),
    pymysql.err.IntegrityError(1452, "foreign key"),
    psycopg.errors.UniqueViolation("duplicate key"),
    ConfigError("bad job"),
    SchemaIncompatible("column missing"),
    UnitPaused("paused"),
]


class TestIsTransient:
    @pytest.mark.parametrize("error", TRANSIENT, ids=lambda e: type(e).__name__)
    def test_connection_errors_are_retried(self, error: BaseException) -> None:
        """Lost connections, timeouts and unreachable servers may succeed on another try."""
        assert is_transient(error)

    @pytest.mark.parametrize("error", TERMINAL, ids=lambda e: type(e).__name__)
    def test_data_and_sql_errors_are_not(self, error: BaseException) -> None:
        """Constraint violations, bad SQL and DataTrace's terminal errors fail at once."""
        assert not is_transient(error)

    def test_the_cause_decides_for_a_wrapping_error(self) -> None:
        """An error raised from a lost connection is retried; one from a duplicate key is not."""
        try:
            try:
                raise pymysql.err.OperationalError(2006, "MySQL server has gone away")
            except pymysql.err.OperationalError as inner:
                raise RuntimeError("batch failed") from inner
        except RuntimeError as outer:
            assert is_transient(outer)
        try:
            try:
                raise _wrapped(sa_exc.IntegrityError, pymysql.err.IntegrityError(1062, "dup"))
            except sa_exc.IntegrityError as inner:
                raise RuntimeError("batch failed") from inner
        except RuntimeError as outer:
            assert not is_transient(outer)


@pytest.mark.usefixtures("prefect_harness")
class TestRetriesInAFlow:
    @pytest.mark.parametrize(
        ("error", "status", "attempts"),
        [
            (TRANSIENT[0], UnitStatus.COMPLETED, 2),
            (TERMINAL[0], UnitStatus.FAILED, 1),
        ],
        ids=["operational-retried", "integrity-not-retried"],
    )
    def test_first_attempt_fails(
        self, manager: TaskManager, error: BaseException, status: UnitStatus, attempts: int
    ) -> None:
        """A unit whose first attempt raises: retried only if the error is transient."""
        task_id = manager.create_task("retry", ["a"])
        calls: list[int] = []

        def flaky(_unit: Any, _reporter: Any) -> None:
            calls.append(1)
            if len(calls) == 1:
                raise error

        manager.execute_auto_mode(task_id, 1, flaky, retries=2, retry_delay_seconds=0.01)
        (unit,) = manager.store.load_units(task_id)
        assert unit.status is status
        assert len(calls) == attempts == unit.attempts
