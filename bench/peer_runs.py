"""The peers of `bench.peers` and how each is run: whole processes, timed from start to exit.

pgloader (MariaDB -> PostgreSQL), mydumper + myloader and `mariadb-dump | mariadb`
(MariaDB -> MariaDB); the Debian packages are installed by `install()` when missing
(never project dependencies). Each run goes into a fresh empty target database,
and its target row count (`COUNT(*)` on the server) is checked against the source's.
Override the PostgreSQL server with `DATATRACE_BENCH_PG_URL`
(`postgresql+psycopg://postgres@127.0.0.1:5432`, no database).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from bench import MYSQL_URL, mysql_cli, server_engine
from bench.copy import DDL, FILL, TABLE

SRC = "dt_bench_peers_src"
MY_DST = "dt_bench_peers_dst"
PG_DB = "dt_bench_peers"
PG_URL = os.environ.get("DATATRACE_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432")
MYDUMPER_THREADS = 2
PACKAGES = {"pgloader": ("pgloader",), "mydumper": ("mydumper", "myloader")}


@dataclass
class Run:
    """One whole process: wall seconds, exit status, peak RSS (its own or its children's)."""

    seconds: float
    returncode: int
    rss_mb: float
    output: str


def timed(cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> Run:
    """Run `cmd` to its exit; the peak RSS is `wait4`'s (the largest process it waited for)."""
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        proc = subprocess.Popen(
            cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
    return Run(seconds, proc.returncode, usage.ru_maxrss / 1024, text)


# -- setup: the peers, the source, fresh targets -------------------------------------------


def install() -> list[str]:
    """apt-get the missing peers (update first if that fails); returns those still missing."""
    missing = [pkg for pkg, tools in PACKAGES.items() if not all(map(shutil.which, tools))]
    if missing:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        cmd = ["apt-get", "install", "-y", "-qq", *missing]
        print(f"installing {' '.join(missing)} ...", flush=True)
        if subprocess.run(cmd, env=env, check=False).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
            subprocess.run(cmd, env=env, check=False)
    return [pkg for pkg, tools in PACKAGES.items() if not all(map(shutil.which, tools))]


def versions() -> dict[str, str]:
    """The first line of each peer's version output."""
    found = {}
    for tool, flag in (("pgloader", "--version"), ("mydumper", "--version")):
        if shutil.which(tool):
            out = subprocess.run([tool, flag], capture_output=True, text=True, check=False)
            found[tool] = (out.stdout or out.stderr).strip().splitlines()[0]
    return found


def generate(rows: int) -> int:
    """(Re)create the source table (bench.copy's 6 columns); returns its `COUNT(*)`."""
    mysql_cli(f"DROP SCHEMA IF EXISTS {SRC}; CREATE SCHEMA {SRC} CHARACTER SET utf8mb4")
    statements = [f"USE {SRC}", DDL]
    for lo in range(1, rows + 1, 1_000_000):
        statements.append(FILL.format(lo=lo, hi=min(lo + 999_999, rows)))
    mysql_cli(";\n".join(statements) + f";\nANALYZE TABLE {SRC}.{TABLE}")
    return count_mysql(SRC)


def _pg_admin() -> sa.Engine:
    url = make_url(PG_URL).set(database="postgres")
    return sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)


def reset_pg(*, drop_only: bool = False) -> None:
    """An empty target database on PostgreSQL (dropped even if something is connected)."""
    engine = _pg_admin()
    with engine.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
        if not drop_only:
            conn.exec_driver_sql(f"CREATE DATABASE {PG_DB}")
    engine.dispose()


def reset_mysql() -> None:
    """An empty target schema on MariaDB."""
    mysql_cli(f"DROP SCHEMA IF EXISTS {MY_DST}; CREATE SCHEMA {MY_DST} CHARACTER SET utf8mb4")


def drop_all() -> None:
    """Leave nothing behind: the source, both targets."""
    mysql_cli(f"DROP SCHEMA IF EXISTS {SRC}; DROP SCHEMA IF EXISTS {MY_DST}")
    reset_pg(drop_only=True)


def count_mysql(schema: str) -> int | None:
    """`COUNT(*)` of `schema`.t on MariaDB, None when there is no such table."""
    engine = server_engine()
    try:
        with engine.connect() as conn:
            sql = f"SELECT COUNT(*) FROM {schema}.{TABLE}"  # noqa: S608 (fixed names)
            return int(conn.exec_driver_sql(sql).scalar_one())
    except sa.exc.DBAPIError:
        return None
    finally:
        engine.dispose()


def count_pg(schema: str) -> int | None:
    """`COUNT(*)` of `schema`.t in the PostgreSQL target, None when there is no such table."""
    engine = sa.create_engine(pg_url(), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            sql = f'SELECT COUNT(*) FROM "{schema}".{TABLE}'  # noqa: S608 (fixed names)
            return int(conn.exec_driver_sql(sql).scalar_one())
    except sa.exc.DBAPIError:
        return None
    finally:
        engine.dispose()


def pg_url() -> URL:
    """The SQLAlchemy URL of the PostgreSQL target database."""
    return make_url(PG_URL).set(database=PG_DB)


# -- the peers ---------------------------------------------------------------------------


def _mysql_args(url: URL) -> list[str]:
    args = [
        "-h",
        url.host or "127.0.0.1",
        "-P",
        str(url.port or 3306),
        "-u",
        url.username or "root",
    ]
    return args + ([f"-p{url.password}"] if url.password else [])


def pgloader_load() -> str:
    """pgloader's load file: only the one table, its defaults otherwise."""
    my = make_url(MYSQL_URL).set(drivername="mysql", database=SRC)
    pg = pg_url().set(drivername="postgresql")
    return (
        "LOAD DATABASE\n"
        f"  FROM {my.render_as_string(hide_password=False)}\n"
        f"  INTO {pg.render_as_string(hide_password=False)}\n"
        f"  INCLUDING ONLY TABLE NAMES MATCHING '{TABLE}';\n"
    )


def pgloader_command(tmp: Path) -> list[str]:
    """`pgloader --root-dir TMP/pgloader TMP/bench.load` (its logs stay in the temp folder)."""
    load = tmp / "bench.load"
    load.write_text(pgloader_load())
    return ["pgloader", "--root-dir", str(tmp / "pgloader"), str(load)]


def run_pgloader(tmp: Path) -> tuple[Run, int | None]:
    """MariaDB -> PostgreSQL by pgloader; the table lands in a schema named after the source."""
    reset_pg()
    run = timed(pgloader_command(tmp), cwd=tmp)
    return run, count_pg(SRC)


def _mydumper_table() -> str:
    """mydumper before 0.11 takes `-T table` with `-B`; later versions want `db.table`."""
    out = subprocess.run(["mydumper", "--version"], capture_output=True, text=True, check=False)
    found = re.search(r"(\d+)\.(\d+)", out.stdout + out.stderr)
    old = found is not None and (int(found[1]), int(found[2])) < (0, 11)
    return TABLE if old else f"{SRC}.{TABLE}"


def mydumper_commands(dump: Path, chunk_rows: int | None = None) -> tuple[list[str], list[str]]:
    """mydumper of the one table into the folder `dump`, then myloader of it, 2 threads each.

    Without `chunk_rows` mydumper writes one file per table (one thread dumps it and one
    loads it); with it (`-r`), the table is cut into files of that many rows.
    """
    args = _mysql_args(make_url(MYSQL_URL))
    threads = ["-t", str(MYDUMPER_THREADS)]
    mydumper = ["mydumper", *args, "-B", SRC, "-T", _mydumper_table(), *threads, "-o", str(dump)]
    if chunk_rows:
        mydumper += ["-r", str(chunk_rows)]
    myloader = ["myloader", *args, "-d", str(dump), "-B", MY_DST, *threads]
    return mydumper, myloader


def run_mydumper(tmp: Path, chunk_rows: int | None = None) -> tuple[Run, int | None]:
    """MariaDB -> MariaDB by mydumper then myloader, timed as one process."""
    reset_mysql()
    shutil.rmtree(tmp / "mydumper", ignore_errors=True)
    mydumper, myloader = mydumper_commands(tmp / "mydumper", chunk_rows)
    script = f"{shlex.join(mydumper)} && {shlex.join(myloader)}"
    run = timed(["bash", "-c", script])
    shutil.rmtree(tmp / "mydumper", ignore_errors=True)
    return run, count_mysql(MY_DST)


def dump_command() -> str:
    """`mariadb-dump --single-transaction src t | mariadb dst`, as bench.copy runs it."""
    args = shlex.join(_mysql_args(make_url(MYSQL_URL)))
    return f"mariadb-dump {args} --single-transaction {SRC} {TABLE} | mariadb {args} {MY_DST}"


def run_dump(tmp: Path) -> tuple[Run, int | None]:
    """MariaDB -> MariaDB by the dump pipeline (a failure anywhere in it fails the run)."""
    reset_mysql()
    run = timed(["bash", "-o", "pipefail", "-c", dump_command()])
    return run, count_mysql(MY_DST)
