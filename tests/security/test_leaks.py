"""The database password never leaks: a real job run with a distinctive password, then a
grep of everything it left behind (item 8 of issue 6)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.api.helpers import Serve, sse_messages
from tests.security.conftest import CANARY_PASSWORD, MariaDB

pytestmark = pytest.mark.mysql

DATATRACE = [sys.executable, "-m", "datatrace_tasks"]
WRONG_PASSWORD = "Xq7-wrong-canary-4Kp"


def files_holding(folder: Path, secrets: list[bytes]) -> list[str]:
    """Every file under `folder` (SQLite databases and their WAL included) holding a secret."""
    found = []
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path}: {s!r}" for s in secrets if s in data]
    return found


def test_password_appears_nowhere(
    tmp_path: Path, mariadb: MariaDB, source_db: str, serve: Serve
) -> None:
    """Logs, Prefect's home (logs, artifacts, its database), the store, the API and the
    stream never hold the password; URLs show as user:***@host."""
    target = mariadb.create_database("dt_sec_dst")
    home, state = tmp_path / "prefect-home", tmp_path / "state.db"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_LOGGING_LEVEL": "DEBUG",
        "PREFECT_LOGGING_ROOT_LEVEL": "DEBUG",
        "DATATRACE_DATABASE_URL": f"sqlite:///{state}",
        "SRC_PASSWORD": CANARY_PASSWORD,
        "COLUMNS": "200",
    }
    env.pop("PREFECT_API_URL", None)
    source = mariadb.url(source_db, password="${SRC_PASSWORD}").replace("%24%7B", "${")
    source = source.replace("%7D", "}")
    job = tmp_path / "job.yaml"
    job.write_text(
        yaml.safe_dump(
            {
                "name": "leak-check",
                "source": source,
                "target": mariadb.url(target),  # the password in clear in the file
                "tables": ["victim", "with space"],
                "batch_size": 2,
            }
        )
    )
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(
        yaml.safe_dump(
            {
                "name": "wrong",
                "source": mariadb.url(source_db, password=WRONG_PASSWORD),
                "target": mariadb.url(target),
            }
        )
    )
    outputs = []

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            [*DATATRACE, *args], capture_output=True, text=True, env=env, timeout=300
        )
        outputs.append(out.stdout + out.stderr)
        return out

    ran = cli("run", str(job))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    task_id = re.search(r"sync task (\S+)", ran.stdout)
    assert task_id
    tid = task_id.group(1)
    assert cli("status", tid).returncode == 0
    assert cli("tasks").returncode == 0
    assert cli("verify", tid).returncode == 0
    assert cli("plan", str(job)).returncode == 0
    refused = cli("run", str(wrong))
    assert refused.returncode == 2 and "***" in refused.stderr

    live = serve(f"sqlite:///{state}")
    with live.client() as client:
        for path in ("/api/tasks", f"/api/tasks/{tid}", f"/api/tasks/{tid}/units"):
            response = client.get(path)
            assert response.status_code == 200
            outputs.append(response.text)
        outputs.append(client.post(f"/api/tasks/{tid}/resume").text)
        outputs.append(client.get("/openapi.json").text)
        last = client.get(f"/api/tasks/{tid}/units").json()["last_event_id"]
        with client.stream("GET", "/api/events", params={"last_event_id": "0"}) as stream:
            for message in sse_messages(stream.iter_lines()):
                outputs.append(message.data)
                if message.id is not None and int(message.id) >= last:
                    break
    tasks = [t for t in live.app.state.datatrace.store.list_tasks() if t.id == tid]
    assert tasks[0].source == f"mysql+pymysql://{mariadb.user}:***@127.0.0.1:3306/{source_db}"

    text = "\n".join(outputs)
    assert CANARY_PASSWORD not in text and WRONG_PASSWORD not in text
    assert f"{mariadb.user}:***@" in text
    secrets = [s.encode() for s in (CANARY_PASSWORD, WRONG_PASSWORD)]
    secrets += [s.encode("utf-16-le") for s in (CANARY_PASSWORD,)]
    assert files_holding(home, secrets) == []
    holders = {line.split(": ")[0] for line in files_holding(tmp_path, secrets)}
    assert holders == {str(job), str(wrong)}  # only the job files themselves
    assert any(home.rglob("*.db")), "the child's Prefect database was not where expected"
