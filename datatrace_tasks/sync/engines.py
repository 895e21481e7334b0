"""Engines for the source and target, with the session settings an exact copy needs."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Literal, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from datatrace_tasks.exceptions import DatabaseUnreachable
from datatrace_tasks.mysqltls import SharedTlsConnection, connect_with_shared_tls
from datatrace_tasks.sync.catalog import SourceTable, read_catalog, resolve_tables
from datatrace_tasks.sync.infile import GuardedConnection
from datatrace_tasks.sync.job import mask_url

Role = Literal["source", "target"]
T = TypeVar("T")


def is_mysql(engine: Engine) -> bool:
    """MySQL and MariaDB share a dialect name in SQLAlchemy."""
    return engine.dialect.name in ("mysql", "mariadb")


def create(url: URL, *, role: Role) -> Engine:
    """An engine whose sessions keep values exact.

    MySQL sessions run in UTC so TIMESTAMP values are not shifted (or made ambiguous
    by a DST change) between source and target; target sessions switch foreign-key
    checks off because tables are copied one by one, in parallel, in any order, and
    keep a copied 0 in an AUTO_INCREMENT column (NO_AUTO_VALUE_ON_ZERO).
    """
    connect_args: dict[str, Any] = {}
    options: dict[str, Any] = {}
    if url.get_backend_name() == "sqlite":
        # Several units write to one SQLite file at once: wait for the lock.
        connect_args["timeout"] = 60
    else:
        # Each unit holds a reader and a writer connection per key range at once.
        options = {"pool_size": 8, "max_overflow": 40}
    if role == "target" and url.get_driver_name() == "pymysql":
        # The bulk path (LOAD DATA LOCAL INFILE, see bulk.py); the server may still refuse.
        connect_args["local_infile"] = True
    engine = sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args, **options)
    if url.get_driver_name() == "pymysql":
        # A guarded target connection sends only files DataTrace offers (infile.py).
        guarded = connect_args.get("local_infile", False)
        connect_with_shared_tls(engine, GuardedConnection if guarded else SharedTlsConnection)

    if is_mysql(engine):

        @sa.event.listens_for(engine, "connect")
        def _session(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("SET time_zone = '+00:00'")
            if role == "target":
                cursor.execute("SET foreign_key_checks = 0")
                # A copied 0 in an AUTO_INCREMENT column stays 0, not the next number.
                cursor.execute(
                    "SET SESSION sql_mode = CONCAT_WS(',', NULLIF(@@sql_mode, ''),"
                    " 'NO_AUTO_VALUE_ON_ZERO')"
                )
            cursor.close()

    return engine


def describe(url: URL) -> str:
    """`database 'x' at host:port (masked url)` for error messages."""
    where = url.host or "local file"
    if url.port:
        where = f"{where}:{url.port}"
    return f"database {url.database!r} at {where} ({mask_url(url)})"


def unreachable(url: URL, role: Role, exc: BaseException) -> DatabaseUnreachable:
    """A DatabaseUnreachable naming host and database, with any password scrubbed."""
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    if url.password:
        reason = reason.replace(str(url.password), "***")
    return DatabaseUnreachable(f"cannot connect to the {role} {describe(url)}: {reason}")


def check(engine: Engine, *, role: Role) -> None:
    """Open and close one connection, so a bad host or password fails early and clearly.

    Raises:
        DatabaseUnreachable: connect or authentication failed.
    """
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except DBAPIError as exc:
        # Anything the driver says while connecting and running `SELECT 1` is about the
        # connection: a bad host, password or database name (1102 for one too long).
        raise unreachable(engine.url, role, exc) from None


class Databases:
    """The source and target of one job: engines made once, the catalog read once.

    Shared by every unit of the job, from several threads at once.
    """

    def __init__(self, source: URL, target: URL) -> None:
        self.source = create(source, role="source")
        self.target = create(target, role="target")
        self._catalog: dict[str, SourceTable] | None = None
        self._lock = threading.Lock()
        self._once: dict[str, Any] = {}

    def once(self, what: str, read: Callable[[], T]) -> T:
        """`read()` the first time `what` is asked for, its value after that: for what
        every unit of the job reads alike (the source's schema objects)."""
        with self._lock:
            if what not in self._once:
                self._once[what] = read()
            return cast(T, self._once[what])

    def catalog(self) -> dict[str, SourceTable]:
        """The source catalog, read on first use after checking both databases answer.

        Raises:
            DatabaseUnreachable: the source or the target cannot be reached.
        """
        with self._lock:
            if self._catalog is None:
                check(self.source, role="source")
                check(self.target, role="target")
                try:
                    self._catalog = read_catalog(self.source)
                except (OperationalError, InterfaceError) as exc:
                    raise unreachable(self.source.url, "source", exc) from None
            return self._catalog

    def table(self, name: str) -> SourceTable:
        """The catalog entry of one table.

        Raises:
            TableNotFound: no such table in the source schema.
        """
        return resolve_tables(self.catalog(), [name])[0]

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.source.dispose()
        self.target.dispose()
