"""The `datatrace` command: exit codes and messages, run as a real process."""

from __future__ import annotations

import datetime
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests.conftest import MYSQL_ENV, server_url
from tests.orchestration.conftest import STAMP, events_source
from tests.orchestration.test_lifecycle import make_source, target_rows

DATATRACE = [sys.executable, "-m", "datatrace_tasks"]


def datatrace(
    *args: str, state: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI with its own state store; returns the finished process."""
    full_env = {
        **os.environ,
        "DATATRACE_DATABASE_URL": f"sqlite:///{state}",
        "COLUMNS": "200",
        **(env or {}),
    }
    return subprocess.run(
        [*DATATRACE, *args], capture_output=True, text=True, env=full_env, timeout=300
    )


def tasks_in(state: Path) -> int:
    """How many sync tasks the state store holds (0 if it was never created)."""
    if not state.exists():
        return 0
    engine = sa.create_engine(f"sqlite:///{state}")
    with engine.connect() as conn:
        tables = sa.inspect(conn).get_table_names()
        count = (
            conn.scalar(sa.text("SELECT COUNT(*) FROM sync_tasks")) if "sync_tasks" in tables else 0
        )
    engine.dispose()
    return int(count or 0)


@pytest.fixture
def source(tmp_path: Path) -> str:
    """A small SQLite source with two tables."""
    return make_source(tmp_path / "src.db", {"alpha": 30, "beta": 1_200})


def write_job(path: Path, body: str) -> Path:
    """Write a job file and return its path."""
    path.write_text(body, encoding="utf-8")
    return path


class TestHelp:
    def test_help_lists_commands(self, tmp_path: Path) -> None:
        """--help exits 0 and names the main commands."""
        out = datatrace("--help", state=tmp_path / "s.db")
        assert out.returncode == 0
        for command in ("demo", "plan", "run", "resume", "status", "verify", "pause"):
            assert command in out.stdout


class TestBadInput:
    def test_unknown_key(self, tmp_path: Path, source: str) -> None:
        """A job file with an unknown key exits non-zero naming the key; nothing written."""
        job = write_job(
            tmp_path / "job.yaml",
            f"name: x\nsource: {source}\ntarget: sqlite:///{tmp_path}/t.db\nbatchsize: 10\n",
        )
        out = datatrace("run", str(job), state=tmp_path / "s.db")
        assert out.returncode == 2
        assert "unknown key 'batchsize'" in out.stderr
        assert tasks_in(tmp_path / "s.db") == 0
        assert not (tmp_path / "t.db").exists()

    def test_malformed_yaml(self, tmp_path: Path) -> None:
        """Broken YAML exits non-zero with the file named."""
        job = write_job(tmp_path / "bad.yaml", "name: [unclosed\n")
        out = datatrace("plan", str(job), state=tmp_path / "s.db")
        assert out.returncode == 2 and "bad.yaml" in out.stderr

    def test_unknown_table(self, tmp_path: Path, source: str) -> None:
        """A table the source lacks is named; no task and no target table are created."""
        job = write_job(
            tmp_path / "job.yaml",
            f"name: x\nsource: {source}\ntarget: sqlite:///{tmp_path}/t.db\n"
            'tables: ["alpha", "ghost`; DROP TABLE alpha; --"]\n',
        )
        out = datatrace("run", str(job), state=tmp_path / "s.db")
        assert out.returncode == 2
        assert "ghost" in out.stderr
        assert tasks_in(tmp_path / "s.db") == 0

    @pytest.mark.mysql
    def test_wrong_password_is_masked(self, tmp_path: Path, source: str) -> None:
        """A wrong target password: one readable line naming host, password masked, exit 2."""
        target = make_url(server_url(MYSQL_ENV)).set(username="nobody", password="Sup3r-Secret-PW")
        job = write_job(
            tmp_path / "job.yaml",
            f"name: x\nsource: {source}\ntarget: ${{DST_URL}}\n",
        )
        out = datatrace(
            "run",
            str(job),
            state=tmp_path / "s.db",
            env={"DST_URL": target.render_as_string(hide_password=False)},
        )
        assert out.returncode == 2
        assert "Sup3r-Secret-PW" not in out.stderr + out.stdout
        assert "127.0.0.1" in out.stderr and "***" in out.stderr
        assert tasks_in(tmp_path / "s.db") == 0

    def test_status_loads_neither_prefect_nor_a_database_driver_it_does_not_use(
        self, tmp_path: Path
    ) -> None:
        """`status` on a SQLite store prints the task's units without importing Prefect
        or pymysql (each costs start-up time the command does not need)."""
        state = tmp_path / "s.db"
        script = (
            "import sys\n"
            "from datatrace_tasks.state.store import Store\n"
            f"task = Store('sqlite:///{state}').create_task(name='t', units=[('a', 'a')])\n"
            "from datatrace_tasks.cli.app import main\n"
            "sys.argv = ['datatrace', 'status', task]\n"
            "try:\n    main()\n"
            "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
            "print(sorted(m for m in ('prefect', 'pymysql') if m in sys.modules))\n"
        )
        env = {**os.environ, "DATATRACE_DATABASE_URL": f"sqlite:///{state}", "COLUMNS": "200"}
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
        )
        assert out.returncode == 0, out.stderr
        assert "pending" in out.stdout
        assert out.stdout.strip().splitlines()[-1] == "[]"

    def test_unknown_task_status(self, tmp_path: Path) -> None:
        """status of an unknown task exits non-zero naming it."""
        out = datatrace("status", "no-such-task", state=tmp_path / "s.db")
        assert out.returncode == 2 and "no-such-task" in out.stderr

    def test_unreachable_state_store(self, tmp_path: Path) -> None:
        """An unreachable state store is one line naming it, password masked."""
        out = datatrace(
            "tasks",
            state=tmp_path / "s.db",
            env={"DATATRACE_DATABASE_URL": "postgresql+psycopg://u:TopSecret9@127.0.0.1:1/x"},
        )
        assert out.returncode == 2
        assert "TopSecret9" not in out.stderr and "127.0.0.1:1" in out.stderr


class TestPlan:
    def test_plan_writes_nothing(self, tmp_path: Path, source: str) -> None:
        """plan lists the units with their DDL and leaves the target untouched."""
        job = write_job(
            tmp_path / "job.yaml", f"name: x\nsource: {source}\ntarget: sqlite:///{tmp_path}/t.db\n"
        )
        out = datatrace("plan", str(job), state=tmp_path / "s.db")
        assert out.returncode == 0, out.stderr
        assert "alpha" in out.stdout and "beta" in out.stdout and "CREATE TABLE" in out.stdout
        target = tmp_path / "t.db"
        assert (
            not target.exists()
            or not sa.inspect(sa.create_engine(f"sqlite:///{target}")).get_table_names()
        )
        assert tasks_in(tmp_path / "s.db") == 0

    def test_plan_shows_each_tables_settings(self, tmp_path: Path, source: str) -> None:
        """plan names the target table, the filter and the columns a table's settings
        give; a bad filter is refused with the server's reason and `run` exits 2
        writing nothing."""
        settings = (
            'table_settings:\n  beta:\n    where: "id % 2 = 0"\n    columns: [id]\n'
            "    target: beta_even\n"
        )
        target = tmp_path / "t.db"
        head = f"name: x\nsource: {source}\ntarget: sqlite:///{target}\n"
        job = write_job(tmp_path / "job.yaml", head + settings)
        out = datatrace("plan", str(job), state=tmp_path / "s.db")
        assert out.returncode == 0, out.stderr
        assert "beta -> beta_even" in out.stdout
        assert "rows where id % 2 = 0" in out.stdout and "columns id" in out.stdout
        bad = write_job(tmp_path / "bad.yaml", head + settings.replace("id % 2", "idd % 2"))
        refused = datatrace("run", str(bad), state=tmp_path / "s.db")
        assert refused.returncode == 2  # bad input, as for every refused job
        assert "table_settings.beta.where" in refused.stderr and "idd" in refused.stderr
        assert (
            not target.exists()
            or not sa.inspect(sa.create_engine(f"sqlite:///{target}")).get_table_names()
        )
        assert tasks_in(tmp_path / "s.db") == 0


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli_env(state: Path) -> dict[str, str]:
    """The environment of a CLI child with its own state store."""
    return {**os.environ, "DATATRACE_DATABASE_URL": f"sqlite:///{state}", "COLUMNS": "200"}


class TestRun:
    def test_run_then_status(self, tmp_path: Path, source: str, prefect_api_url: str) -> None:
        """run copies every table, prints the task id and exits 0; status shows it."""
        job = write_job(
            tmp_path / "job.yaml",
            f"name: x\nsource: {source}\ntarget: sqlite:///{tmp_path}/t.db\nbatch_size: 500\n",
        )
        out = datatrace(
            "run", str(job), state=tmp_path / "s.db", env={"PREFECT_API_URL": prefect_api_url}
        )
        assert out.returncode == 0, out.stderr
        task_id = re.search(r"sync task (\S+)", out.stdout)
        assert task_id, out.stdout
        shown = datatrace("status", task_id.group(1), state=tmp_path / "s.db")
        assert shown.returncode == 0, shown.stderr
        assert "2 of 2 units completed, 0 failed" in shown.stdout
        assert "1,230 rows" in shown.stdout

    def test_the_summary_is_whole_at_80_columns(
        self, tmp_path: Path, source: str, prefect_api_url: str
    ) -> None:
        """At 80 columns every status shows whole (not "comple…") and a failed unit's
        error is printed in full below the table, as the store holds it."""
        target = tmp_path / "t.db"
        job = write_job(
            tmp_path / "job.yaml", f"name: x\nsource: {source}\ntarget: sqlite:///{target}\n"
        )
        first = datatrace(
            "run", str(job), state=tmp_path / "s.db", env={"PREFECT_API_URL": prefect_api_url}
        )
        assert first.returncode == 0, first.stdout + first.stderr
        engine = sa.create_engine(f"sqlite:///{target}")
        with engine.begin() as conn:  # the next run's writes to beta fail, with a long reason
            reason = "beta is frozen for the audit; " * 4
            conn.exec_driver_sql(
                "CREATE TRIGGER frozen BEFORE INSERT ON beta"
                f" BEGIN SELECT RAISE(ABORT, '{reason}'); END"
            )
        engine.dispose()
        env = {"PREFECT_API_URL": prefect_api_url, "COLUMNS": "80"}
        out = datatrace("run", str(job), state=tmp_path / "s.db", env=env)
        assert out.returncode == 1, out.stdout + out.stderr
        task_id = re.search(r"sync task (\S+)", out.stdout)
        assert task_id, out.stdout
        state = sa.create_engine(f"sqlite:///{tmp_path / 's.db'}")
        with state.connect() as conn:
            error = conn.execute(
                sa.text(
                    "SELECT error_message FROM task_unit_runtimes"
                    " WHERE unit_id = 'beta' AND task_id = :task"
                ),
                {"task": task_id.group(1)},
            ).scalar_one()
        state.dispose()
        assert len(error) > 80
        for shown in (
            out.stdout,
            datatrace(
                "status", task_id.group(1), state=tmp_path / "s.db", env={"COLUMNS": "80"}
            ).stdout,
        ):
            lines = shown.splitlines()
            assert max(len(line) for line in lines) <= 80, shown
            assert any("alpha" in line and "completed" in line for line in lines), shown
            assert any("beta" in line and "failed" in line for line in lines), shown
            assert " ".join(" ".join(shown.split()).split()).find(" ".join(error.split())) >= 0


class TestHistory:
    def test_a_differential_rerun_shows_in_the_jobs_history(
        self, tmp_path: Path, source: str, prefect_api_url: str
    ) -> None:
        """Two runs of one differential job, the source changed in between (an update, an
        insert, a delete): `history` lists both, newest first, the second writing 2 rows
        and deleting 1, whole at 80 columns; the target then equals the source."""
        target = f"sqlite:///{tmp_path}/t.db"
        job = write_job(
            tmp_path / "job.yaml",
            f"name: nightly\nsource: {source}\ntarget: {target}\nmode: differential\n",
        )
        env = {"PREFECT_API_URL": prefect_api_url}
        state = tmp_path / "s.db"
        assert datatrace("run", str(job), state=state, env=env).returncode == 0
        engine = sa.create_engine(source)
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE beta SET label = 'changed' WHERE id = 7"))
            conn.execute(sa.text("INSERT INTO beta VALUES (5000, 'new', 1.25)"))
            conn.execute(sa.text("DELETE FROM alpha WHERE id = 3"))
        engine.dispose()
        again = datatrace("run", str(job), state=state, env=env)
        assert again.returncode == 0, again.stdout + again.stderr

        shown = datatrace("history", str(job), state=state, env={"COLUMNS": "80"})
        assert shown.returncode == 0, shown.stderr
        lines = shown.stdout.splitlines()
        assert max(len(line) for line in lines) <= 80
        runs = [i for i, line in enumerate(lines) if "units 2/2 completed, 2 verified" in line]
        assert len(runs) == 2, shown.stdout
        newest, oldest = runs
        assert " differential " in lines[newest] and " full " in lines[oldest]
        assert "rows read 2, written 2, deleted 1" in lines[newest + 2]
        assert "rows read 1,230, written 1,230, deleted 0" in lines[oldest + 2]
        assert re.search(r"task \S{36}$", lines[newest + 1])
        # Each run names its Prefect flow run, there on the server with the job's name.
        link = re.fullmatch(r"  (http\S+/runs/flow-run/(\S{36}))", lines[newest + 3])
        assert link, shown.stdout
        run = httpx.get(f"{prefect_api_url}/flow_runs/{link.group(2)}", timeout=30).json()
        assert run["name"] == "nightly"
        for table in ("alpha", "beta"):  # the amounts were verified ("2 verified")
            copied = [r[:2] for r in target_rows(target, table)]
            assert copied == [r[:2] for r in target_rows(source, table)]

    def test_an_incremental_rerun_copies_only_the_change(
        self, tmp_path: Path, prefect_api_url: str
    ) -> None:
        """An incremental job run twice through the CLI, the state store between them: the
        second run reads the first one's mark from the store and copies the 3 rows changed
        since plus the one at the mark; `history` says incremental with those figures."""
        target = f"sqlite:///{tmp_path}/t.db"
        source, events = events_source(tmp_path / "src.db", 400)
        job = write_job(
            tmp_path / "job.yaml",
            f"name: hourly\nsource: {source}\ntarget: {target}\nmode: incremental\n"
            "cursor: updated_at\nlookback: 0\n",
        )
        env, state = {"PREFECT_API_URL": prefect_api_url}, tmp_path / "s.db"
        assert datatrace("run", str(job), state=state, env=env).returncode == 0
        later = STAMP + datetime.timedelta(days=1)
        engine = sa.create_engine(source)
        with engine.begin() as conn:
            conn.execute(events.update().where(events.c.id.in_([3, 200])), {"v": "changed"})
            conn.execute(events.update().where(events.c.id.in_([3, 200])).values(updated_at=later))
            conn.execute(events.insert(), [{"id": 999, "v": "new", "updated_at": later}])
        engine.dispose()
        again = datatrace("run", str(job), state=state, env=env)
        assert again.returncode == 0, again.stdout + again.stderr

        shown = datatrace("history", str(job), state=state, env={"COLUMNS": "80"})
        lines = shown.stdout.splitlines()
        runs = [i for i, line in enumerate(lines) if "units 1/1 completed, 1 verified" in line]
        assert len(runs) == 2, shown.stdout
        newest, oldest = runs
        assert " incremental " in lines[newest] and " full " in lines[oldest]
        assert "rows read 4, written 4, deleted 0" in lines[newest + 2]
        assert target_rows(target, "events") == target_rows(source, "events")

    def test_a_job_that_never_ran_is_an_error(self, tmp_path: Path) -> None:
        """`history` of an unknown job name says so and exits non-zero."""
        out = datatrace("history", "no-such-job", state=tmp_path / "s.db")
        assert out.returncode == 1
        assert "no run of a job named 'no-such-job'" in out.stderr


class TestServe:
    def test_serve_answers_and_stops(self, tmp_path: Path) -> None:
        """serve listens where asked and answers the REST API over the configured store."""
        port = free_port()
        proc = subprocess.Popen(
            [*DATATRACE, "serve", "--port", str(port)],
            env=cli_env(tmp_path / "s.db"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            body = poll_json(f"http://127.0.0.1:{port}/api/tasks", proc, until=lambda b: True)
            assert body == []
            taken = datatrace("serve", "--port", str(port), state=tmp_path / "s.db")
            assert taken.returncode == 2
            assert f"cannot listen on 127.0.0.1:{port}" in taken.stderr
        finally:
            proc.terminate()
            proc.wait(timeout=20)


class TestDemo:
    def test_demo_serves_its_dashboard_while_running(
        self, tmp_path: Path, prefect_api_url: str
    ) -> None:
        """demo prints the dashboard address first, serves the job live, then exits 0."""
        port = free_port()
        proc = subprocess.Popen(
            [*DATATRACE, "demo", "--scale", "0.02", "--port", str(port), "--folder", str(tmp_path)],
            env={**cli_env(tmp_path / "s.db"), "PREFECT_API_URL": prefect_api_url},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            assert f"http://127.0.0.1:{port}/" in first, first
            tasks = poll_json(
                f"http://127.0.0.1:{port}/api/tasks", proc, until=lambda body: bool(body)
            )
            assert tasks and tasks[0]["name"] == "demo-shop"
            rest = proc.communicate(timeout=240)[0]
        finally:
            proc.kill()
        assert proc.returncode == 0, rest
        assert rest.count("completed") >= 6
        with sa.create_engine(f"sqlite:///{tmp_path}/target.db").connect() as conn:
            assert conn.scalar(sa.text('SELECT COUNT(*) FROM "page views"')) == 1_600


def poll_json(url: str, proc: subprocess.Popen[str], until: Any, timeout: float = 60) -> Any:
    """GET url until its JSON body satisfies `until`, while `proc` is still running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the process exited before its dashboard answered"
        try:
            response = httpx.get(url, timeout=5)
        except httpx.TransportError:
            time.sleep(0.1)
            continue
        if response.status_code == 200 and until(response.json()):
            return response.json()
        time.sleep(0.1)
    raise AssertionError(f"{url} never answered as expected")
