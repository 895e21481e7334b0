"""The store's connection: an engine tuned per backend, sessions, and its migrations."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from datatrace_tasks.exceptions import DatabaseUnreachable
from datatrace_tasks.urls import describe, mask_text, mask_url, parse_url

log = logging.getLogger("datatrace")
T = TypeVar("T")

_MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "datatrace_alembic_version"  # Alembic keeps the revision here (env.py)
HEAD_REVISION = "0003"
"""The newest migration's revision (a test holds it to Alembic's own head)."""
_migrated: set[str] = set()
_migrate_lock = threading.Lock()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers (the dashboard) run while unit threads write.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for the store's URL, tuned per backend for many short transactions."""
    parsed = parse_url(url)
    backend = parsed.get_backend_name()
    kwargs: dict[str, Any] = {}
    if backend == "sqlite":  # a file: no connection to go stale, nothing to ping
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 60, "check_same_thread": False}
    else:
        kwargs["pool_pre_ping"] = True
    if backend in ("mysql", "mariadb"):
        # READ COMMITTED: no gap locks between unit threads updating their own rows.
        kwargs.update(isolation_level="READ COMMITTED", pool_size=10, max_overflow=40)
        kwargs["connect_args"] = {"connect_timeout": 10}
    elif backend == "postgresql":
        kwargs.update(pool_size=10, max_overflow=40)
        kwargs["connect_args"] = {"connect_timeout": 10}
    engine = create_engine(parsed, **kwargs)
    if parsed.get_driver_name() == "pymysql":
        # Imported here: a SQLite store (`datatrace status`) need not load pymysql.
        from datatrace_tasks.mysqltls import connect_with_shared_tls

        connect_with_shared_tls(engine)
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


_file_locks: dict[str, threading.RLock] = {}


def _one_writer(url: str) -> AbstractContextManager[Any]:
    """The lock that keeps this process's transactions on one SQLite file in turn.

    SQLite has one writer per file. Threads of one process that collide on it wait in
    SQLite's busy handler, which sleeps in steps of up to 100 ms (or fail at once when
    a read turns into a write in WAL mode); taking turns on a lock here costs
    microseconds instead. Other processes still meet the busy timeout. Servers get no
    lock: they have row locks.
    """
    parsed = parse_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return nullcontext()
    key = os.path.abspath(parsed.database) if parsed.database != ":memory:" else url
    with _migrate_lock:
        return _file_locks.setdefault(key, threading.RLock())


def unreachable(url: str, exc: BaseException) -> DatabaseUnreachable:
    """One readable error naming the database, with every password masked."""
    reason = getattr(exc, "orig", None) or exc
    return DatabaseUnreachable(
        f"cannot use {describe(url)} ({mask_url(url)}): {mask_text(str(reason))}"
    )


def retry_unreachable(operation: Callable[[], T], *, seconds: float, what: str) -> T:
    """Run a store operation, retrying while the state database is unreachable.

    A state store that restarts or drops connections for a few seconds must not
    fail the units copying meanwhile; after `seconds` the error stands.
    """
    deadline = time.monotonic() + seconds
    delay = 0.1
    while True:
        try:
            return operation()
        except (OperationalError, InterfaceError, DatabaseUnreachable) as exc:
            if time.monotonic() + delay > deadline:
                raise
            first_line = mask_text(str(exc)).splitlines()[0]
            log.warning("state store unreachable writing %s (%s); retrying", what, first_line)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


class StoreConnection:
    """One state database: its engine, its sessions, its schema brought up to date.

    Args:
        url: SQLAlchemy URL. SQLite, MySQL/MariaDB (`mysql+pymysql://`) and PostgreSQL
            (`postgresql+psycopg://`) are supported.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._turn = _one_writer(url)
        self.migrate()

    @property
    def masked_url(self) -> str:
        """The URL as it may be shown."""
        return mask_url(self.url)

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (once per URL and process)."""
        with _migrate_lock:
            if self.url in _migrated:
                return
            try:
                if self._revision() != HEAD_REVISION:
                    self._upgrade()
            except (OperationalError, DBAPIError) as exc:
                raise unreachable(self.url, exc) from exc
            _migrated.add(self.url)

    def _revision(self) -> str | None:
        """The schema's Alembic revision, read with one SELECT (None: not migrated yet).

        A store already at the head is not handed to Alembic at all, so a command
        that only reads (`datatrace status`) does not pay for importing it.
        """
        with self.engine.connect() as connection:
            if not inspect(connection).has_table(VERSION_TABLE):
                return None
            return connection.execute(
                text(f"SELECT version_num FROM {VERSION_TABLE}")  # noqa: S608 - a constant
            ).scalar()

    def _upgrade(self) -> None:
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(_MIGRATIONS))
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def dispose(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A Core transaction, for the hot writes that need no ORM unit of work."""
        with self._reachable(), self._turn, self.engine.begin() as connection:
            yield connection

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed on success, rolled back on error."""
        with self._reachable(), self._turn, self._sessions.begin() as session:
            yield session

    @contextmanager
    def _reachable(self) -> Iterator[None]:
        """A lost connection becomes one readable DatabaseUnreachable."""
        try:
            yield
        except OperationalError as exc:
            if exc.connection_invalidated or "connect" in str(exc.orig).lower():
                raise unreachable(self.url, exc) from exc
            raise
