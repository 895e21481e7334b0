"""dlt's incremental loading of one table, MariaDB -> PostgreSQL, for bench.resync to set
beside DataTrace's incremental re-sync.

dlt is not a project dependency: it lives in a virtualenv of its own under the system's
temporary folder, made on first use (`pip install "dlt[sql_database,postgres]"` with
pyarrow, its fastest extraction backend). Each call runs one pipeline as a whole process:
`sql_table` with `dlt.sources.incremental(cursor)` and `write_disposition="merge"` on the
primary key, so its first run loads every row and a later run loads the rows whose cursor
reached the last value it saw, merged into the target. It does not verify what it wrote.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from sqlalchemy.engine import URL

from bench.peer_runs import Run, timed

VENV = Path(tempfile.gettempdir()) / "datatrace-bench-dlt"
PACKAGES = ["dlt[sql_database,postgres]", "pyarrow", "sqlalchemy", "pymysql"]
DATASET = "dlt_bench"

SCRIPT = """
import sys
import dlt
from dlt.sources.sql_database import sql_table

source, target, table, cursor, key, folder, dataset = sys.argv[1:8]
rows = sql_table(
    credentials=source, table=table, backend="pyarrow",
    incremental=dlt.sources.incremental(cursor),
)
rows.apply_hints(primary_key=key, write_disposition="merge")
pipeline = dlt.pipeline(
    pipeline_name="dt_bench", destination=dlt.destinations.postgres(target),
    dataset_name=dataset, pipelines_dir=folder,
)
print(pipeline.run(rows))
"""


def python() -> Path | None:
    """dlt's interpreter, installing it first if needed; None: it would not install."""
    exe = VENV / "bin" / "python"
    if exe.exists():
        return exe
    print(f"installing dlt into {VENV} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    done = subprocess.run([str(exe), "-m", "pip", "install", "-q", *PACKAGES], check=False)
    if done.returncode != 0:
        shutil.rmtree(VENV, ignore_errors=True)
        return None
    return exe


def load(exe: Path, folder: Path, source: str, target: URL, table: str, cursor: str) -> Run:
    """One dlt pipeline run (`folder` keeps its local state between runs)."""
    script = folder / "dlt_job.py"
    script.write_text(SCRIPT)
    # dlt insists on a password; a server with trust auth never asks for it.
    pg_target = target.set(drivername="postgresql", password=target.password or "unused")
    pg = pg_target.render_as_string(hide_password=False)
    state = str(folder / "state")
    return timed([str(exe), str(script), source, pg, table, cursor, "id", state, DATASET])


def forget(folder: Path) -> None:
    """Drop dlt's local pipeline state: the next run is a first one (its dataset must go too)."""
    shutil.rmtree(folder / "state", ignore_errors=True)
