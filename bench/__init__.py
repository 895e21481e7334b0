"""Benchmarks (issue 7): each prints a table and appends it to `bench/README.md`.

Shared helpers: the MariaDB server to use, a CLI runner, and the machine line every
table carries. Override the server with `DATATRACE_BENCH_MYSQL_URL`
(`mysql+pymysql://root@127.0.0.1:3306`, no database).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

MYSQL_URL = os.environ.get("DATATRACE_BENCH_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306")
README = Path(__file__).with_name("README.md")


def server_engine() -> sa.Engine:
    """An engine on the benchmark server, no database selected."""
    return sa.create_engine(MYSQL_URL, poolclass=sa.pool.NullPool)


def mysql_cli(sql: str) -> None:
    """Run SQL through the `mariadb` client (statements separated by `;`)."""
    url = make_url(MYSQL_URL)
    args = ["mariadb", "-h", url.host or "127.0.0.1", "-P", str(url.port or 3306)]
    args += ["-u", url.username or "root"]
    env = dict(os.environ)
    if url.password:
        env["MYSQL_PWD"] = str(url.password)
    subprocess.run(args, input=sql.encode(), check=True, env=env, capture_output=True)


def machine() -> str:
    """`date, nproc, CPU model, Python, server version` for the report."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    engine = server_engine()
    with engine.connect() as conn:
        version = conn.exec_driver_sql("SELECT VERSION()").scalar_one()
    engine.dispose()
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"{now}; nproc {os.cpu_count()}; {model}; Python {platform.python_version()};"
        f" server {version} on the same host"
    )


def publish(lines: list[str], *, record: bool = True) -> None:
    """Print one benchmark's table and, unless told not to, append it to bench/README.md."""
    text = "\n".join(lines) + "\n"
    print()
    print(text)
    if record:
        with README.open("a", encoding="utf-8") as out:
            out.write("\n" + text)
