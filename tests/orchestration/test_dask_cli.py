"""`datatrace run` on a real Dask cluster (a scheduler and two worker processes), and
what travels to the workers: the job's file and the store's masked URL, never a password."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from datatrace_tasks.orchestration.flow import _unit_body
from datatrace_tasks.orchestration.hooks import unit_hooks
from datatrace_tasks.orchestration.manager import TaskManager
from datatrace_tasks.orchestration.scaleout import JobProcessFn, manager_handle
from datatrace_tasks.state.store import Store
from datatrace_tasks.sync import load_job
from tests.conftest import MYSQL_ENV, _scratch_database
from tests.orchestration.conftest import count_rows

pytest.importorskip("prefect_dask")
import cloudpickle  # type: ignore[import-untyped]  # noqa: E402  (comes with dask)
from distributed import Client  # noqa: E402

pytestmark = [pytest.mark.mysql, pytest.mark.slow]

PASSWORD = "S3cret-dask-9f2"  # noqa: S105 - a scratch user's, for this test only
TABLES = {f"t{i}": 400 for i in range(4)}


@pytest.fixture
def source_with_password() -> Iterator[str]:
    """A scratch MariaDB database with TABLES, readable by a user with a password."""
    for url in _scratch_database(MYSQL_ENV):
        engine = sa.create_engine(url)
        database = sa.engine.make_url(url).database
        # A user of this database's own: two tests at once on two workers must not
        # drop each other's.
        user = f"dt_dask_{str(database)[-10:]}"
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP USER IF EXISTS '{user}'@'%%'")
            conn.exec_driver_sql(f"CREATE USER '{user}'@'%%' IDENTIFIED BY '{PASSWORD}'")
            conn.exec_driver_sql(f"GRANT ALL ON `{database}`.* TO '{user}'@'%%'")
            for table, rows in TABLES.items():
                conn.exec_driver_sql(f"CREATE TABLE {table} (id INT PRIMARY KEY, v VARCHAR(20))")
                conn.exec_driver_sql(
                    f"INSERT INTO {table} VALUES "  # noqa: S608 - fixed names
                    + ",".join(f"({i}, 'v{i}')" for i in range(1, rows + 1))
                )
        engine.dispose()
        server = sa.engine.make_url(url)
        where = f"{server.host}:{server.port or 3306}/{database}"
        yield f"mysql+pymysql://{user}:${{DT_DASK_PASSWORD}}@{where}"
        with sa.create_engine(url).begin() as conn:
            conn.exec_driver_sql(f"DROP USER IF EXISTS '{user}'@'%%'")


def _job(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "job.yaml"
    job = {
        "name": "dask-cli",
        "source": source,
        "target": f"sqlite:///{tmp_path / 'target.db'}",
        "concurrency": 2,
        "batch_size": 100,
    }
    path.write_text(yaml.safe_dump(job))
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TestWhatTravels:
    def test_no_password_in_what_is_pickled_for_a_worker(
        self, tmp_path: Path, source_with_password: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The unit body, its hooks, the process function and the manager handle, pickled
        as Prefect sends them, hold neither the source's nor the state store's password."""
        monkeypatch.setenv("DT_DASK_PASSWORD", PASSWORD)
        job_path = _job(tmp_path, source_with_password)
        job = load_job(job_path)
        assert PASSWORD in job.source.get_secret_value()
        store_url = f"sqlite:///{tmp_path / 'state.db'}"
        manager = TaskManager(Store(store_url))
        process = JobProcessFn(job, job_path=str(job_path))
        with manager_handle(manager) as handle:
            body = _unit_body(handle, "task", process, [], "abc123")
            hooks = unit_hooks(handle.get, "task", "skip")
            sent = cloudpickle.dumps((body, hooks, process, handle))
        assert PASSWORD.encode() not in sent
        assert str(job_path).encode() in sent  # what the worker reads instead


@pytest.mark.usefixtures("prefect_harness")
class TestDaskCluster:
    def test_cli_run_spreads_units_over_two_dask_workers(
        self, tmp_path: Path, source_with_password: str
    ) -> None:
        """`datatrace run` with DATATRACE_DASK_ADDRESS: both worker processes copy units,
        each reading the job file and its password from its own environment; every table
        is exact."""
        from prefect.settings import PREFECT_API_URL

        port = _free_port()
        address = f"tcp://127.0.0.1:{port}"
        env = {
            **os.environ,
            "PREFECT_API_URL": str(PREFECT_API_URL.value()),
            "DATATRACE_DATABASE_URL": f"sqlite:///{tmp_path / 'state.db'}",
            "DT_DASK_PASSWORD": PASSWORD,
            "DASK_DISTRIBUTED__WORKER__DAEMON": "False",
        }
        logs = (tmp_path / "dask.log").open("wb")
        dask = os.path.join(os.path.dirname(sys.executable), "dask")
        procs = [
            subprocess.Popen(
                [
                    dask,
                    "scheduler",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--dashboard-address",
                    ":0",
                ],
                env=env,
                stdout=logs,
                stderr=subprocess.STDOUT,
            )
        ]
        try:
            client = _connect(address)
            for _ in range(2):
                procs.append(
                    subprocess.Popen(
                        [
                            dask,
                            "worker",
                            address,
                            "--nworkers",
                            "1",
                            "--nthreads",
                            "1",
                            "--no-dashboard",
                        ],
                        env=env,
                        stdout=logs,
                        stderr=subprocess.STDOUT,
                    )
                )
            client.wait_for_workers(2, timeout=60)
            run = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "datatrace_tasks",
                    "run",
                    str(_job(tmp_path, source_with_password)),
                ],
                env={**env, "DATATRACE_DASK_ADDRESS": address},
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert run.returncode == 0, run.stdout + run.stderr
            cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers lack tests/
            built = client.run(_process_functions_built)
            assert len(built) == 2 and all(n >= 1 for n in built.values()), built
            client.close()
        finally:
            for proc in reversed(procs):
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
            logs.close()
        for table, rows in TABLES.items():
            assert count_rows(f"sqlite:///{tmp_path / 'target.db'}", table) == rows


def _connect(address: str) -> Client:
    deadline = time.monotonic() + 60
    while True:
        try:
            return Client(address, timeout=5)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _process_functions_built() -> int:
    """Run on each worker: how many jobs' copy functions this worker process built."""
    from datatrace_tasks.orchestration import scaleout

    return len(scaleout._process_fns)
