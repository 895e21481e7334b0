"""Fixtures for the copy engine: real MariaDB, PostgreSQL and SQLite databases."""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from tests.conftest import MYSQL_ENV, POSTGRES_ENV, server_url
from tests.sync.helpers import SyncKit

# The shared material sits beside the repository (`../shared`), in CI as on a laptop.
SAKILA = Path(
    os.environ.get(
        "DATATRACE_SAKILA_DIR",
        Path(__file__).resolve().parents[3] / "shared" / "datasets" / "sakila",
    )
)
SAKILA_ROWS = {
    "actor": 200,
    "address": 603,
    "category": 16,
    "city": 600,
    "country": 109,
    "customer": 599,
    "film": 1000,
    "film_actor": 5462,
    "film_category": 1000,
    "film_text": 1000,
    "inventory": 4581,
    "language": 6,
    "payment": 16049,
    "rental": 16044,
    "staff": 2,
    "store": 2,
}


def _server_url(var: str) -> URL:
    return make_url(server_url(var))


def new_name(prefix: str = "dt_test") -> str:
    """A fresh schema name, unique per call."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def mysql_server() -> URL:
    """The MariaDB server URL from DATATRACE_TEST_MYSQL_URL."""
    return _server_url(MYSQL_ENV)


@pytest.fixture(scope="session")
def postgres_server() -> URL:
    """The PostgreSQL server URL from DATATRACE_TEST_POSTGRES_URL."""
    return _server_url(POSTGRES_ENV)


def _mysql_admin(server: URL) -> sa.Engine:
    return sa.create_engine(server.set(database=None), poolclass=sa.pool.NullPool)


def _schema_factory(
    admin: sa.Engine, create: str, drop: str, url_for: Callable[[str], URL]
) -> Iterator[Callable[[], URL]]:
    """Yield a factory of empty schemas made by `create`; drop each with `drop` afterwards."""
    made: list[str] = []

    def make() -> URL:
        name = new_name()
        with admin.begin() as conn:
            conn.exec_driver_sql(create.format(name=name))
        made.append(name)
        return url_for(name)

    yield make
    with admin.begin() as conn:
        for name in made:
            conn.exec_driver_sql(drop.format(name=name))
    admin.dispose()


@pytest.fixture
def mysql_schema(mysql_server: URL) -> Iterator[Callable[[], URL]]:
    """A factory of empty MariaDB schemas, each dropped after the test."""
    yield from _schema_factory(
        _mysql_admin(mysql_server),
        "CREATE SCHEMA `{name}` CHARACTER SET utf8mb4",
        "DROP SCHEMA IF EXISTS `{name}`",
        lambda name: mysql_server.set(database=name),
    )


@pytest.fixture
def pg_schema(postgres_server: URL) -> Iterator[Callable[[], URL]]:
    """A factory of empty PostgreSQL schemas (set as search_path), dropped after the test."""
    yield from _schema_factory(
        sa.create_engine(postgres_server, poolclass=sa.pool.NullPool),
        'CREATE SCHEMA "{name}"',
        'DROP SCHEMA IF EXISTS "{name}" CASCADE',
        lambda name: postgres_server.update_query_dict({"options": f"-csearch_path={name}"}),
    )


@pytest.fixture
def target_url(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], URL]:
    """A factory of empty targets by kind: "mysql", "postgres" or "sqlite"."""

    def make(kind: str) -> URL:
        if kind == "mysql":
            return request.getfixturevalue("mysql_schema")()  # type: ignore[no-any-return]
        if kind == "postgres":
            return request.getfixturevalue("pg_schema")()  # type: ignore[no-any-return]
        return make_url(f"sqlite:///{tmp_path / new_name()}.db")

    return make


def _mysql_cli(server: URL, sql: bytes) -> None:
    args = ["mariadb", "-h", server.host or "127.0.0.1", "-P", str(server.port or 3306)]
    args += ["-u", server.username or "root"]
    env = dict(os.environ)
    if server.password:
        env["MYSQL_PWD"] = str(server.password)
    subprocess.run(args, input=sql, check=True, env=env, capture_output=True)


@pytest.fixture(scope="session")
def sakila(mysql_server: URL) -> Iterator[URL]:
    """Sakila loaded once per session into its own MariaDB schema; dropped at the end.

    MariaDB skips MySQL 5.7 executable comments (`/*!50705 ... */`), which hold
    `address.location` (GEOMETRY): they are unwrapped so the column and its values exist.
    """
    name = new_name("dt_test_sakila")
    unwrap = re.compile(rb"/\*!50705 ([^*]*)\*/")
    schema = (SAKILA / "sakila-schema.sql").read_bytes()
    schema = unwrap.sub(rb"\1", re.sub(rb"\bsakila\b", name.encode(), schema))
    data = (SAKILA / "sakila-data.sql").read_bytes()
    data = unwrap.sub(rb"\1", data.replace(b"USE sakila;", f"USE {name};".encode(), 1))
    _mysql_cli(mysql_server, schema)
    _mysql_cli(mysql_server, data)
    yield mysql_server.set(database=name)
    admin = _mysql_admin(mysql_server)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS `{name}`")
    admin.dispose()


@pytest.fixture
def sync(target_url: Callable[[str], URL]) -> SyncKit:
    """The copy kit: `sync.target(kind)`, `sync.job(...)`, `sync.run(...)`, `sync.reporter`."""
    return SyncKit(target_url)


@pytest.fixture(scope="session")
def sakila_rows() -> dict[str, int]:
    """Row counts of every Sakila table, from the dataset's README."""
    return dict(SAKILA_ROWS)


ODD_TABLE = "we`ird-name x"
ODD_COLUMN = "co`l -1;"

_EDGE_DDL = [
    "CREATE TABLE pairs (a INT NOT NULL, b VARCHAR(20) NOT NULL, v INT, PRIMARY KEY (a, b))",
    "CREATE TABLE nulls (id INT PRIMARY KEY, i INT, u BIGINT UNSIGNED, d DECIMAL(10,3),"
    " f DOUBLE, s VARCHAR(10), t TEXT, bl BLOB, dt DATETIME(6), da DATE, tm TIME,"
    " y YEAR, e ENUM('x','y'), st SET('p','q'), bi BIT(5))",
    "CREATE TABLE texts (id INT PRIMARY KEY, body TEXT) CHARACTER SET utf8mb4",
    "CREATE TABLE empty (id INT PRIMARY KEY, v VARCHAR(5))",
    "CREATE TABLE `we``ird-name x` (id INT PRIMARY KEY, `co``l -1;` VARCHAR(10))",
    "CREATE TABLE nokey (v INT)",
    "CREATE TABLE big (id INT PRIMARY KEY, v VARCHAR(30), ts TIMESTAMP(3) NULL)",
    "CREATE TABLE dated (k DATETIME(6) NOT NULL, n DECIMAL(12,4) NOT NULL, v INT,"
    " PRIMARY KEY (k, n))",
]
NULLABLE = ["i", "u", "d", "f", "s", "t", "bl", "dt", "da", "tm", "y", "e", "st", "bi"]
TEXTS = ["纵横四海", "emoji 😀🚀", "mixed ñ ü ß 中文 🐍", "", "quote ' \" ` ;"]


@pytest.fixture
def edge_source(mysql_schema: Callable[[], URL]) -> URL:
    """A MariaDB schema with the awkward tables: composite keys, NULLs, unicode, odd names."""
    url = mysql_schema()
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        for ddl in _EDGE_DDL:
            conn.exec_driver_sql(ddl)
        conn.execute(
            sa.text("INSERT INTO pairs VALUES (:a, :b, :v)"),
            [{"a": a, "b": b, "v": a * 10} for a in range(5) for b in ("x", "y", "Z", "é", "")],
        )
        conn.execute(
            sa.text(
                "INSERT INTO nulls VALUES (:id, :i, :u, :d, :f, :s, :t, :bl, :dt, :da, :tm,"
                " :y, :e, :st, :bi)"
            ),
            [
                dict.fromkeys(NULLABLE) | {"id": 1},
                {
                    "id": 2,
                    "i": -5,
                    "u": 18446744073709551615,
                    "d": "1234567.125",
                    "f": 0.1,
                    "s": "abc",
                    "t": "long text",
                    "bl": b"\x00\xff\x10",
                    "dt": "2024-02-29 23:59:59.123456",
                    "da": "1999-12-31",
                    "tm": "-838:59:59",
                    "y": 2155,
                    "e": "y",
                    "st": "p,q",
                    "bi": 21,
                },
            ],
        )
        conn.execute(
            sa.text("INSERT INTO texts VALUES (:id, :body)"),
            [{"id": i, "body": body} for i, body in enumerate(TEXTS)],
        )
        conn.execute(
            sa.text("INSERT INTO `we``ird-name x` VALUES (1, 'odd'), (2, NULL)"),
        )
        conn.execute(sa.text("INSERT INTO nokey VALUES (1), (1)"))
        conn.execute(
            sa.text("INSERT INTO big VALUES (:id, :v, :ts)"),
            [
                {"id": i, "v": f"row {i}", "ts": f"2024-03-31 0{i % 4}:30:00.{i % 1000:03d}"}
                for i in range(1, 1001)
            ],
        )
        conn.execute(
            sa.text("INSERT INTO dated VALUES (:k, :n, :v)"),
            [
                {"k": f"2024-01-0{1 + i % 3} 10:00:00.{i:06d}", "n": f"{i}.5", "v": i}
                for i in range(60)
            ],
        )
    engine.dispose()
    return url
