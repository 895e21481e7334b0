"""Fixtures of the security tests: a scratch MariaDB user with a distinctive password,
scratch databases it owns, a source holding odd-but-legal tables, and the server's
general log read back as the statements that user ran."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from tests.api.conftest import serve  # noqa: F401  (the live-server fixture)
from tests.conftest import MYSQL_ENV, server_url
from tests.security.hostile import ODD_COLUMNS, ODD_TABLES, ODD_VALUES

CANARY_PASSWORD = "Xq7-leak-canary-9Zt"
"""The scratch user's password: it must never show up anywhere but in the job's URLs."""

VICTIM_ROWS = 3


def _execute(engine: Engine, sql: str, params: dict[str, object] | None = None) -> None:
    """Run one administrative statement; without params the text goes verbatim."""
    with engine.connect() as conn:
        if params is None:
            conn.exec_driver_sql(sql, execution_options={"no_parameters": True})
        else:
            conn.execute(sa.text(sql), params)
        conn.commit()


@dataclass
class MariaDB:
    """A scratch user on the real server, and the scratch databases it may use."""

    admin: Engine
    user: str
    password: str
    databases: list[str] = field(default_factory=list)

    def quote(self, name: str) -> str:
        """`name` quoted for the server (backticks doubled)."""
        return str(self.admin.dialect.identifier_preparer.quote(name))

    def create_database(self, prefix: str) -> str:
        """A new empty database the scratch user has every right on; dropped at the end."""
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        _execute(self.admin, f"CREATE DATABASE {self.quote(name)} CHARACTER SET utf8mb4")
        for host in ("127.0.0.1", "localhost"):
            _execute(
                self.admin,
                f"GRANT ALL PRIVILEGES ON {self.quote(name)}.* TO :user@:host",
                {"user": self.user, "host": host},
            )
        self.databases.append(name)
        return name

    def url(self, database: str, *, password: str | None = None) -> str:
        """The scratch user's URL of `database`, password in clear (for job files only)."""
        base = make_url(self.admin.url)
        return base.set(
            username=self.user,
            password=self.password if password is None else password,
            database=database,
        ).render_as_string(hide_password=False)

    def tables(self, database: str) -> set[str]:
        """The base tables of `database`."""
        with self.admin.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = :s"),
                {"s": database},
            )
            return {str(r[0]) for r in rows}


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDB]:
    """A scratch user `dt_sec_*` with the canary password; it and its databases are dropped."""
    admin = sa.create_engine(make_url(server_url(MYSQL_ENV)), poolclass=sa.pool.NullPool)
    db = MariaDB(admin, f"dt_sec_{uuid.uuid4().hex[:8]}", CANARY_PASSWORD)
    for host in ("127.0.0.1", "localhost"):
        _execute(
            admin,
            "CREATE USER :user@:host IDENTIFIED BY :pw",
            {"user": db.user, "host": host, "pw": db.password},
        )
    try:
        yield db
    finally:
        for name in db.databases:
            _execute(admin, f"DROP DATABASE IF EXISTS {db.quote(name)}")
        for host in ("127.0.0.1", "localhost"):
            _execute(admin, "DROP USER IF EXISTS :user@:host", {"user": db.user, "host": host})
        admin.dispose()


def odd_rows(table: str) -> list[dict[str, object]]:
    """The rows of one odd table: every odd value once, in every text column."""
    return [
        {
            "id": i + 1,
            ODD_COLUMNS[1]: value,
            ODD_COLUMNS[2]: f"{table} {value}",
            ODD_COLUMNS[3]: value[::-1],
            ODD_COLUMNS[4]: i * 7,
        }
        for i, value in enumerate(ODD_VALUES)
    ]


@pytest.fixture(scope="session")
def source_db(mariadb: MariaDB) -> str:
    """A source database: `victim` plus every legal-but-odd table, with odd values."""
    name = mariadb.create_database("dt_sec_src")
    engine = sa.create_engine(make_url(mariadb.admin.url).set(database=name))
    md = sa.MetaData()
    victim = sa.Table(
        "victim",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("label", sa.String(40)),
    )
    odd = [
        sa.Table(
            table,
            md,
            sa.Column(ODD_COLUMNS[0], sa.Integer, primary_key=True, autoincrement=False),
            sa.Column(ODD_COLUMNS[1], sa.String(100)),
            sa.Column(ODD_COLUMNS[2], sa.Text),
            sa.Column(ODD_COLUMNS[3], sa.String(100, collation="utf8mb4_bin")),
            sa.Column(ODD_COLUMNS[4], sa.Integer),
        )
        for table in ODD_TABLES
    ]
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(victim), [{"id": i, "label": f"v{i}"} for i in range(1, VICTIM_ROWS + 1)]
        )
        for table in odd:
            conn.execute(sa.insert(table), odd_rows(table.name))
        # Estimates in information_schema are what `plan` shows; make them current.
        for table in [victim, *odd]:
            conn.exec_driver_sql(
                f"ANALYZE TABLE {mariadb.quote(table.name)}".replace("%", "%%"),
            )
    engine.dispose()
    return name


# Literals and quoted identifiers as the general log shows them (pymysql escapes with
# backslashes, MariaDB quotes identifiers with backticks, doubling a backtick inside).
_QUOTED = re.compile(
    r"""`(?:[^`]|``)*`"""
    r"""|[xX]'[0-9A-Fa-f]*'"""
    r"""|_binary'(?:[^'\\]|\\.|'')*'"""
    r"""|'(?:[^'\\]|\\.|'')*'"""
    r"""|"(?:[^"\\]|\\.|"")*\"""",
    re.DOTALL,
)


def skeleton(statement: str) -> str:
    """The statement with every literal and quoted identifier replaced by a placeholder."""
    return _QUOTED.sub(lambda m: "`q`" if m.group().startswith("`") else "?", statement)


def without_literals(statement: str) -> str:
    """The statement with every literal replaced by `?`; quoted identifiers are kept."""
    return _QUOTED.sub(lambda m: m.group() if m.group().startswith("`") else "?", statement)


ALLOWED_SHAPES = re.compile(
    r"""^\s*(?:
        SELECT\b
        | SHOW\s+(?:VARIABLES|CREATE\s+TABLE|COLLATION|CHARACTER\s+SET|FULL\s+TABLES|TABLES)\b
        | SET\s+(?:time_zone|foreign_key_checks|NAMES|autocommit|SESSION|@@session)\b
        | INSERT\s+INTO\b
        | CREATE\s+TABLE\b
        | LOAD\s+DATA\s+LOCAL\s+INFILE\b
        | DESCRIBE\b
        | COMMIT\b | ROLLBACK\b | BEGIN\b | START\s+TRANSACTION\b
    )""",
    re.IGNORECASE | re.VERBOSE,
)
"""What a job may run on its source or target: reads, catalog reads, session settings,
inserts, table creation and bulk loads. No DROP, DELETE, ALTER, GRANT, TRUNCATE..."""


def unexpected(statement: str) -> str | None:
    """Why `statement` is outside the expected set, or None when it is fine."""
    shape = skeleton(statement)
    if not ALLOWED_SHAPES.match(shape):
        return "not an expected statement shape"
    for token in (";", "--", "/*", "#"):
        if token in shape:
            return f"{token!r} outside any literal or quoted identifier"
    return None


LOG_LOCK = "datatrace_security_general_log"
"""A server-wide named lock: one capture window at a time, across test processes."""


@dataclass
class Captured:
    """The statements the scratch user ran inside one capture window, in order, as text."""

    statements: list[str] = field(default_factory=list)


class GeneralLog:
    """The server's general log (as a table), on only around the statements a test checks.

    The log table is CSV: every read scans all of it, and every statement of every client
    is appended while the log is on. So the log is switched on only for a capture window,
    the table is emptied first (when the log was off, nobody else is reading it), and read
    back once at the end for the scratch user only. Windows of concurrent test processes
    are serialized with a server-wide named lock.
    """

    def __init__(self, admin: Engine, user: str) -> None:
        self.admin = admin
        self.user = user

    @contextmanager
    def capture(self) -> Iterator[Captured]:
        """Log everything run inside the block; `statements` is filled when it ends."""
        captured = Captured()
        with self.admin.connect() as lock:
            got = lock.execute(sa.text("SELECT GET_LOCK(:n, 600)"), {"n": LOG_LOCK}).scalar()
            assert got == 1, "another test process held the general log for 10 minutes"
            try:
                enabled, output = lock.execute(
                    sa.text("SELECT @@global.general_log, @@global.log_output")
                ).one()
                outputs = {o for o in str(output).split(",") if o and o != "NONE"}
                mine = not enabled  # off: no reader but us, so the table may be emptied
                if mine:
                    _execute(self.admin, "TRUNCATE TABLE mysql.general_log")
                if "TABLE" not in outputs:
                    wanted = ",".join(sorted(outputs | {"TABLE"}))
                    _execute(self.admin, f"SET GLOBAL log_output = '{wanted}'")
                since = lock.execute(sa.text("SELECT NOW(6)")).scalar_one()
                _execute(self.admin, "SET GLOBAL general_log = 1")
                try:
                    yield captured
                finally:
                    if mine:
                        _execute(self.admin, "SET GLOBAL general_log = 0")
                    captured.statements = self._statements(since)
                    if "TABLE" not in outputs:
                        _execute(self.admin, f"SET GLOBAL log_output = '{output}'")
                    if mine:
                        _execute(self.admin, "TRUNCATE TABLE mysql.general_log")
            finally:
                lock.execute(sa.text("SELECT RELEASE_LOCK(:n)"), {"n": LOG_LOCK})

    def _statements(self, since: datetime) -> list[str]:
        """Every query the scratch user ran since `since`, in order, as text."""
        with self.admin.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT argument FROM mysql.general_log WHERE event_time >= :since"
                    " AND command_type = 'Query' AND user_host LIKE :who ORDER BY event_time"
                ),
                {"since": since, "who": f"{self.user}[{self.user}]%"},
            )
            return [
                r[0] if isinstance(r[0], str) else bytes(r[0]).decode("utf-8", "replace")
                for r in rows
            ]


@pytest.fixture(scope="session")
def general_log(mariadb: MariaDB) -> GeneralLog:
    """The server's general log, read back for the scratch user (see GeneralLog.capture)."""
    return GeneralLog(mariadb.admin, mariadb.user)


@pytest.fixture
def mariadb_store(mariadb: MariaDB) -> str:
    """An empty state store on MariaDB, used by the scratch user (so the general log sees it)."""
    return mariadb.url(mariadb.create_database("dt_sec_store"))
