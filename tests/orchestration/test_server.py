"""End to end on a real Prefect server: deploy from prefect.yaml, a process worker, one run.

Starts `prefect server start` on a free loopback port with its own PREFECT_HOME,
creates the work pool, deploys with `prefect --no-prompt deploy --all`, starts a
worker and triggers a run with `prefect deployment run`, as the README does. About a
minute; every child process is killed at the end. CI runs it; skip it locally with
`-m "not prefect_server"` or DATATRACE_SKIP_SERVER_TESTS=1.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from datatrace_tasks.orchestration.artifacts import artifact_key
from datatrace_tasks.state.store import Store
from tests.orchestration.conftest import STAMP, count_rows, events_source, write_job

ROOT = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).with_name("prefect"))

pytestmark = [
    pytest.mark.prefect_server,
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        bool(os.environ.get("DATATRACE_SKIP_SERVER_TESTS")),
        reason="DATATRACE_SKIP_SERVER_TESTS is set",
    ),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM the process group, SIGKILL it if it lingers (a worker may ignore SIGTERM)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


class Server:
    """A running Prefect server, its environment and a way to run the CLI against it."""

    def __init__(self, env: dict[str, str], api: str, logs: Path) -> None:
        self.env = env
        self.api = api
        self.logs = logs
        self.children: list[subprocess.Popen[Any]] = []

    def cli(self, *args: str, timeout: float = 90) -> str:
        out = subprocess.run(
            [PREFECT, *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert out.returncode == 0, f"prefect {' '.join(args)}:\n{out.stdout}\n{out.stderr}"
        return out.stdout

    def start(self, name: str, *args: str) -> subprocess.Popen[Any]:
        log = (self.logs / f"{name}.log").open("w")
        proc = subprocess.Popen(
            [PREFECT, *args],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.children.append(proc)
        return proc

    def get(self, path: str) -> Any:
        response = httpx.get(self.api + path, timeout=30)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        response = httpx.post(self.api + path, json=body, timeout=30)
        response.raise_for_status()
        return response.json()


@pytest.fixture
def prefect_server(tmp_path: Path) -> Iterator[Server]:
    """`prefect server start` on a free port with a fresh database; killed afterwards."""
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_API_URL=api,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED="false",
        PREFECT_WORKER_QUERY_SECONDS="1",
        PREFECT_WORKER_PREFETCH_SECONDS="1",
        PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="2",
        DATATRACE_PROJECT_DIR=str(ROOT),
        DATATRACE_DATABASE_URL=f"sqlite:///{tmp_path / 'state.db'}",
        DATATRACE_DB_LIMIT="2",
    )
    server = Server(env, api, tmp_path)
    proc = server.start("server", "server", "start", "--host", "127.0.0.1", "--port", str(port))
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            try:
                if httpx.get(api + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("prefect server did not become healthy in 120 s")
        yield server
    finally:
        for child in reversed(server.children):
            _stop(child)


class TestDeployment:
    def test_deploy_worker_run_completes(self, tmp_path: Path, prefect_server: Server) -> None:
        """prefect.yaml deployed, a process worker runs it: Completed, units and artifact at 100."""
        tables = {"alpha": 1_500, "beta": 2_500, "gamma": 300}
        job = write_job(tmp_path / "job", tables, name="server-e2e", batch_size=250)
        prefect_server.cli("work-pool", "create", "datatrace", "--type", "process")
        prefect_server.cli("--no-prompt", "deploy", "--all")
        prefect_server.start("worker", "worker", "start", "--pool", "datatrace")
        out = prefect_server.cli(
            "deployment", "run", "datatrace-job/sync-job", "--param", f"job_path={job}"
        )
        match = re.search(r"UUID: ([0-9a-f-]{36})", out)
        assert match, out
        flow_run_id = match.group(1)

        deadline = time.monotonic() + 150
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            state = prefect_server.get(f"/flow_runs/{flow_run_id}")["state"] or {}
            if state.get("type") in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                break
            time.sleep(1)
        worker_log = (tmp_path / "worker.log").read_text(errors="replace")
        assert state.get("type") == "COMPLETED", f"{state}\n{worker_log[-4000:]}"

        store = Store(prefect_server.env["DATATRACE_DATABASE_URL"])
        (task,) = store.list_tasks()
        units = store.load_units(task.id)
        assert sorted(u.id for u in units) == sorted(tables)
        assert {u.status.value for u in units} == {"completed"}
        assert {u.id: u.processed_records for u in units} == tables
        assert count_rows(f"sqlite:///{tmp_path / 'job' / 'dst.db'}", "beta") == 2_500
        store.dispose()

        run = prefect_server.get(f"/flow_runs/{flow_run_id}")
        assert run["name"] == "server-e2e"
        (artifact,) = prefect_server.post(
            "/artifacts/latest/filter",
            {"artifacts": {"key": {"any_": [artifact_key("server-e2e", task.id)]}}},
        )
        assert float(artifact["data"]) == 100.0
        (limit,) = [
            gcl
            for gcl in prefect_server.post("/v2/concurrency_limits/filter", {})
            if gcl["name"].startswith("datatrace-db-sqlite") and "src.db" in gcl["name"]
        ]
        assert limit["limit"] == 2 and limit["active_slots"] == 0


class TestSchedule:
    def test_the_second_scheduled_incremental_run_copies_only_the_change(
        self, tmp_path: Path, prefect_server: Server
    ) -> None:
        """prefect.yaml's incremental deployment on an active 30 s interval schedule with a
        job of our own: the first scheduled run copies the table in full, the source then
        changes (2 updates, 1 insert), and the second scheduled run reads the first one's
        mark from the store and copies just those 3 rows and the one at the mark."""
        source, events = events_source(tmp_path / "src.db", 3_000)
        target = f"sqlite:///{tmp_path / 'dst.db'}"
        job = tmp_path / "job.yaml"
        job.write_text(
            f"name: scheduled-incr\nsource: {source}\ntarget: {target}\nmode: incremental\n"
            "cursor: updated_at\nlookback: 0\n",
            encoding="utf-8",
        )
        prefect_server.cli("work-pool", "create", "datatrace", "--type", "process")
        prefect_server.cli("--no-prompt", "deploy", "--all")
        prefect_server.start("worker", "worker", "start", "--pool", "datatrace")
        deployment = prefect_server.get("/deployments/name/datatrace-job/sync-job-incremental")
        schedule = {"interval": 30, "anchor_date": dt.datetime.now(dt.UTC).isoformat()}
        response = httpx.post(
            f"{prefect_server.api}/deployments/{deployment['id']}/schedules",
            json=[{"schedule": schedule, "active": True, "parameters": {"job_path": str(job)}}],
            timeout=30,
        )
        response.raise_for_status()

        first = self._next_completed(prefect_server, deployment["id"], seen=set())
        engine = sa.create_engine(source)
        later = STAMP + dt.timedelta(days=1)
        with engine.begin() as conn:
            conn.execute(events.update().where(events.c.id.in_([5, 2000])).values(updated_at=later))
            conn.execute(events.insert(), [{"id": 9999, "v": "new", "updated_at": later}])
        engine.dispose()
        second = self._next_completed(prefect_server, deployment["id"], seen={first})
        prefect_server.post(f"/deployments/{deployment['id']}/pause_deployment", {})

        store = Store(prefect_server.env["DATATRACE_DATABASE_URL"])
        runs = store.job_runs("scheduled-incr")
        store.dispose()
        newest, oldest = runs[0], runs[-1]
        assert (oldest.mode, oldest.rows_written) == ("full", 3_000)
        assert (newest.mode, newest.rows_written, newest.verified) == ("incremental", 4, 1)
        assert count_rows(target, "events") == 3_001
        assert first != second

    @staticmethod
    def _next_completed(server: Server, deployment_id: str, seen: set[str]) -> str:
        """The id of the next scheduled flow run of the deployment to complete."""
        deadline = time.monotonic() + 150
        query = {"flow_runs": {"deployment_id": {"any_": [deployment_id]}}}
        while time.monotonic() < deadline:
            for run in server.post("/flow_runs/filter", query):
                state = run.get("state") or {}
                if run["id"] in seen:
                    continue
                assert state.get("type") not in ("FAILED", "CRASHED"), state
                if state.get("type") == "COMPLETED":
                    assert run["auto_scheduled"], run
                    return str(run["id"])
            time.sleep(1)
        pytest.fail("no scheduled run completed in 150 s")
