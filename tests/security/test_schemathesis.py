"""Schemathesis against the side-app's OpenAPI schema: no 500, no schema violation.

Runs the real `schemathesis` CLI (coverage, fuzzing and stateful phases, 50 examples
per operation) against the real app over a store holding a task. The streams are left
out: an event stream never ends, so no generated request to it could complete.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from datatrace_tasks.orchestration.manager import TaskManager
from datatrace_tasks.state.store import Store
from tests.api.helpers import Serve

# A dev dependency (pyproject's `dev` extra): never skipped, its absence fails the test.
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


def test_no_server_error_and_no_schema_violation(
    sqlite_store: Store, serve: Serve, tmp_path: Path
) -> None:
    """0 responses with status 500 and 0 schema violations over every REST operation."""
    assert SCHEMATHESIS.is_file(), f"{SCHEMATHESIS} is missing: install the dev extra"
    TaskManager(sqlite_store).create_task("fuzzed", ["a", "b"])
    live = serve(sqlite_store.url)
    report = tmp_path / "schemathesis.json"
    out = subprocess.run(
        [
            str(SCHEMATHESIS),
            "run",
            f"{live.base_url}/openapi.json",
            "--max-examples",
            "50",
            "--checks",
            "not_a_server_error,response_schema_conformance",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--exclude-path-regex",
            "/events$",
            "--request-timeout",
            "10",
            "--seed",
            "20260601",
            "--report",
            "json",
            "--report-json-path",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    result = json.loads(report.read_text())
    print(json.dumps(result["test_cases"]), json.dumps(result["failures"])[:2000])
    assert result["complete"], out.stdout[-3000:]
    assert result["failures"] == [], out.stdout[-3000:]
    assert result["errors"] == [], out.stdout[-3000:]
    assert out.returncode == 0, out.stdout[-3000:]
