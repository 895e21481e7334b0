"""DataTrace as `bench.peers` runs it: `datatrace run job.yaml`, a whole process, defaults on.

Every run shares one temporary data folder (`DATATRACE_DATA_DIR`) and one SQLite
state store (`DATATRACE_DATABASE_URL`); no other `DATATRACE_*` or `PREFECT_*`
setting of the caller's reaches it. Two Prefect modes: the shared local server
(started once before timing, `datatrace prefect start`, stopped at the end) and
`DATATRACE_PREFECT_SERVER=ephemeral` (Prefect's temporary server in every command;
its database is created before timing, so each run pays the server start, not the
first-ever migration).

Besides the whole process, each run reads back what the store keeps of its unit:
`started_at`/`finished_at` (the unit's own time) and, for the share spent verifying,
the first progress event that counted every row (the end of the copy; the throttled
progress writes lag it by up to `progress_interval`, 1 s) and the verification's
`verified_at` (its end). The verification time is known to within that second.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

import yaml

from bench import MYSQL_URL
from bench.copy import TABLE
from bench.peer_runs import MY_DST, SRC, Run, pg_url, reset_mysql, reset_pg, timed

PROGRESS_INTERVAL = 1.0  # DataTraceSettings.progress_interval's default


def executable() -> str:
    """The `datatrace` command of this venv (or the one on PATH)."""
    here = Path(sys.executable).with_name("datatrace")
    return str(here) if here.exists() else shutil.which("datatrace") or "datatrace"


class DataTrace:
    """`datatrace run` of one job per pair, in a data folder of its own under `tmp`."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.state = tmp / "state.db"
        self.server_pid: int | None = None
        targets = {
            "pg": pg_url().render_as_string(hide_password=False),
            "my": f"{MYSQL_URL}/{MY_DST}",
        }
        self.jobs: dict[str, Path] = {}
        for pair, target in targets.items():
            job = {"name": f"bench-peers-{pair}", "source": f"{MYSQL_URL}/{SRC}"}
            job.update(target=target, tables=[TABLE])
            self.jobs[pair] = tmp / f"job-{pair}.yaml"
            self.jobs[pair].write_text(yaml.safe_dump(job))

    def env(self, *, ephemeral: bool) -> dict[str, str]:
        """The caller's environment without DataTrace or Prefect settings, plus ours."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DATATRACE_"))}
        env.update(
            DATATRACE_DATA_DIR=str(self.tmp / "data"),
            DATATRACE_DATABASE_URL=f"sqlite:///{self.state}",
            COLUMNS="200",  # rich: keep the CLI's summary lines whole
        )
        if ephemeral:
            env.update(
                DATATRACE_PREFECT_SERVER="ephemeral",
                PREFECT_HOME=str(self.tmp / "prefect-ephemeral"),
            )
        return env

    def start(self) -> Run:
        """Start the local server (untimed by the runs) and create the ephemeral database."""
        upgrade = [sys.executable, "-m", "prefect", "server", "database", "upgrade", "-y"]
        timed(upgrade, env=self.env(ephemeral=True))
        run = timed([executable(), "prefect", "start"], env=self.env(ephemeral=False))
        found = re.search(r"pid (\d+)", run.output)
        if run.returncode != 0 or found is None:
            raise RuntimeError(f"datatrace prefect start failed:\n{run.output}")
        self.server_pid = int(found[1])
        return run

    def stop(self) -> list[str]:
        """`datatrace prefect stop`; then end any process of ours still alive. Returns notes."""
        notes = []
        run = timed([executable(), "prefect", "stop"], env=self.env(ephemeral=False))
        if run.returncode != 0 or "stopped" not in run.output:
            notes.append(f"`datatrace prefect stop` said: {run.output.strip()}")
        for pid in leftovers(self.tmp):
            notes.append(f"process {pid} of the benchmark outlived it and was ended")
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        return notes

    def run(self, pair: str, *, ephemeral: bool) -> tuple[Run, dict[str, Any]]:
        """One `datatrace run` into a fresh empty target; the run and its unit's figures."""
        reset_pg() if pair == "pg" else reset_mysql()
        run = timed([executable(), "run", str(self.jobs[pair])], env=self.env(ephemeral=ephemeral))
        figures: dict[str, Any] = {}
        task = re.search(r"sync task (\S+)", run.output)
        cli = re.search(r"task \S+: ([\d.]+) s", run.output)
        if cli is not None:
            figures["cli_seconds"] = float(cli[1])
        if task is not None:
            figures.update(unit_figures(self.state, task[1]))
        return run, figures


def _utc(value: str) -> dt.datetime:
    stamp = dt.datetime.fromisoformat(value)
    return stamp.astimezone(dt.UTC).replace(tzinfo=None) if stamp.tzinfo else stamp


def unit_figures(state: Path, task_id: str) -> dict[str, Any]:
    """The unit's time from the store and, when it was verified, how long that took."""
    with contextlib.closing(sqlite3.connect(state)) as conn:
        row = conn.execute(
            "SELECT started_at, finished_at, verification FROM task_unit_runtimes"
            " WHERE task_id = ?",
            (task_id,),
        ).fetchone()
        copied = conn.execute(
            "SELECT created_at FROM task_unit_events WHERE task_id = ? AND kind = 'progress'"
            " ORDER BY processed_records DESC, id LIMIT 1",
            (task_id,),
        ).fetchone()
    if row is None or row[0] is None or row[1] is None:
        return {}
    started, finished = _utc(row[0]), _utc(row[1])
    figures: dict[str, Any] = {"unit_seconds": (finished - started).total_seconds()}
    verification = json.loads(row[2]) if row[2] else None
    if verification and copied is not None and verification.get("verified_at"):
        copy_end = _utc(copied[0])
        figures["copy_seconds"] = (copy_end - started).total_seconds()
        figures["verify_seconds"] = (_utc(verification["verified_at"]) - copy_end).total_seconds()
        figures["verify_method"] = verification.get("method")
    return figures


def leftovers(tmp: Path) -> list[int]:
    """Processes (other than this one) whose environment names the benchmark's folder."""
    mark = str(tmp).encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if mark in (proc / "environ").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found
