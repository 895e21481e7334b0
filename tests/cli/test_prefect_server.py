"""The shared local Prefect server: started on first use, reused, shown, stopped, or refused
cleanly when it cannot start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from datatrace_tasks.state.leases import process_alive

pytestmark = [pytest.mark.slow, pytest.mark.prefect_server]

DATATRACE = [sys.executable, "-m", "datatrace_tasks"]


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The command's environment: no Prefect server chosen, so the local one is used."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_HOME")}
    env.pop("DATATRACE_PREFECT_SERVER", None)
    env.update(DATATRACE_DATA_DIR=str(data_dir), COLUMNS="200", **extra)
    return env


def _datatrace(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DATATRACE, *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def _post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - localhost
        return json.load(response)


def _job(tmp_path: Path) -> Path:
    source = tmp_path / "source.db"
    engine = sa.create_engine(f"sqlite:///{source}")
    with engine.begin() as conn:
        for table in ("alpha", "beta"):
            conn.exec_driver_sql(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, v TEXT)")
            conn.exec_driver_sql(
                f"INSERT INTO {table} VALUES " + ",".join(f"({i}, 'v{i}')" for i in range(1, 301))  # noqa: S608
            )
    engine.dispose()
    job = tmp_path / "job.yaml"
    job.write_text(
        yaml.safe_dump(
            {
                "name": "local-server",
                "source": f"sqlite:///{source}",
                "target": f"sqlite:///{tmp_path / 'target.db'}",
                "batch_size": 100,
            }
        )
    )
    return job


class TestLocalServer:
    def test_first_run_starts_it_later_runs_reuse_it_and_its_ui_shows_the_runs(
        self, tmp_path: Path
    ) -> None:
        """`run` starts the server once and prints its UI; a second run reuses the same
        process; the server holds both flow runs with one task run per unit; `stop` ends it."""
        env = _env(tmp_path / "data", DATATRACE_DATABASE_URL=f"sqlite:///{tmp_path / 's.db'}")
        job = _job(tmp_path)
        try:
            first = _datatrace(env, "run", str(job))
            assert first.returncode == 0, first.stdout + first.stderr
            assert "starting the local Prefect server" in first.stdout
            assert "Prefect UI: http://127.0.0.1:" in first.stdout
            record = json.loads((tmp_path / "data" / "prefect" / "server.json").read_text())
            second = _datatrace(env, "run", str(job))
            assert second.returncode == 0, second.stdout + second.stderr
            assert "starting the local Prefect server" not in second.stdout
            again = json.loads((tmp_path / "data" / "prefect" / "server.json").read_text())
            assert again == record
            api = f"http://127.0.0.1:{record['port']}/api"
            runs = _post(
                f"{api}/flow_runs/filter", {"flow_runs": {"name": {"any_": ["local-server"]}}}
            )
            assert len(runs) == 2 and {r["state_type"] for r in runs} == {"COMPLETED"}
            units = _post(
                f"{api}/task_runs/filter", {"flow_runs": {"id": {"any_": [runs[0]["id"]]}}}
            )
            assert sorted(t["name"] for t in units) == ["alpha", "beta"]
            status = _datatrace(env, "prefect", "status")
            assert status.returncode == 0 and str(record["pid"]) in status.stdout
        finally:
            stopped = _datatrace(env, "prefect", "stop")
        assert stopped.returncode == 0 and "stopped" in stopped.stdout
        assert _datatrace(env, "prefect", "status").returncode == 1
        # Gone, or a zombie nobody reaps here (its parent, the first `run`, has exited).
        assert not process_alive(record["pid"])

    def test_a_server_that_cannot_start_is_refused_cleanly(self, tmp_path: Path) -> None:
        """When the server cannot start: one readable error with the way out, exit 2,
        no sync task created, no server left behind."""
        state = tmp_path / "s.db"
        env = _env(
            tmp_path / "data",
            DATATRACE_DATABASE_URL=f"sqlite:///{state}",
            # a database the server cannot reach: it exits at start
            PREFECT_SERVER_DATABASE_CONNECTION_URL="postgresql+asyncpg://nobody@127.0.0.1:9/none",
        )
        result = _datatrace(env, "run", str(_job(tmp_path)))
        assert result.returncode == 2, result.stdout + result.stderr
        assert "local Prefect server" in result.stderr
        assert "DATATRACE_PREFECT_SERVER=ephemeral" in result.stderr
        assert "Traceback" not in result.stderr
        assert not (tmp_path / "data" / "prefect" / "server.json").exists()
        if state.exists():
            with sa.create_engine(f"sqlite:///{state}").connect() as conn:
                assert conn.exec_driver_sql("SELECT COUNT(*) FROM sync_tasks").scalar() == 0
