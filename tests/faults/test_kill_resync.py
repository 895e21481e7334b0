"""kill -9 of a repeat sync, then resume: the target ends exact; an incremental job's
mark never runs ahead of the rows that were written."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from datatrace_tasks.sync.checkpoint import decode_value
from tests.conftest import MYSQL_ENV, _scratch_database
from tests.faults.conftest import Cli

pytestmark = pytest.mark.mysql

ROWS = 200_000
CHANGED = "MOD(id, 3) = 0"
DELETES = "DELETE FROM events WHERE MOD(id, 200) = 1"  # 1,000 rows
FILL = (
    "INSERT INTO events SELECT seq, CONCAT('row ', seq),"  # noqa: S608 - fixed numbers
    f" '2026-01-01' + INTERVAL seq SECOND FROM seq_1_to_{ROWS}"
)  # 66,666 rows updated between the first and the second run


@pytest.fixture
def pair() -> Iterator[tuple[str, str]]:
    """A MariaDB source with `events` (a DATETIME(6) cursor) of ROWS rows, and a target."""
    for source in _scratch_database(MYSQL_ENV):
        for target in _scratch_database(MYSQL_ENV):
            _sql(
                source,
                "CREATE TABLE events (id INT PRIMARY KEY, v VARCHAR(40),"
                " updated_at DATETIME(6) NOT NULL)",
                FILL,
            )
            yield source, target


def _sql(url: str, *statements: str) -> None:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        for sql in statements:
            conn.exec_driver_sql(sql)
    engine.dispose()


def _state(url: str) -> tuple[int, int]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        count = conn.exec_driver_sql("SELECT COUNT(*) FROM events").scalar_one()
        checksum = conn.exec_driver_sql("CHECKSUM TABLE events").one()[1]
    engine.dispose()
    return int(count), int(checksum)


def _mark(cli: Cli, task_id: str) -> object:
    figures = json.loads(cli.units(task_id)["events"]["figures"] or "{}")
    mark = figures.get("high_water")
    return None if mark is None else decode_value(mark["value"]).isoformat()


def test_kill_9_of_an_incremental_run_resumes_exact_and_keeps_its_mark(
    pair: tuple[str, str], cli: Cli, tmp_path: Path
) -> None:
    """Run 1 copies everything. A third of the rows change; run 2 is killed midway. A row
    it had already passed changes while it is down. The resume finishes the window, finds
    that row different on verification and writes it again; the mark it sets is the
    cursor maximum read before run 2 began, not later. Run 3 then copies only the rows
    at or past that mark, and the target equals the source after each run."""
    source, target = pair
    job = tmp_path / "job.yaml"
    job.write_text(
        f"name: nightly\nsource: {source}\ntarget: {target}\nmode: incremental\n"
        "cursor: updated_at\nlookback: 0\nbatch_size: 2000\n",
        encoding="utf-8",
    )
    code, text = cli.run("run", str(job))
    assert code == 0, text
    changed = f"UPDATE events SET v = 'changed', updated_at = '2026-06-01' WHERE {CHANGED}"  # noqa: S608
    _sql(source, changed)

    proc, _, task_id = cli.start_run(job)
    copied = cli.wait_for_progress(task_id, proc, 20_000)
    assert proc.poll() is None, "run 2 finished before the kill"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert copied < ROWS // 3 + 1
    _sql(source, "UPDATE events SET v = 'while down', updated_at = '2026-07-01' WHERE id = 3")

    code, text = cli.resume(task_id)
    assert code == 0, text
    assert _state(target) == _state(source)
    assert _mark(cli, task_id) == "2026-06-01T00:00:00"  # read before run 2 copied a row

    proc, out, third = cli.start_run(job)
    assert proc.wait(timeout=300) == 0, out.read_text()
    figures = json.loads(cli.units(third)["events"]["figures"])
    assert figures["mode"] == "incremental"
    assert figures["rows_read"] == ROWS // 3  # the rows at the mark, and id 3 past it
    assert _mark(cli, third) == "2026-07-01T00:00:00"
    assert _state(target) == _state(source)


def test_kill_9_of_a_differential_run_resumes_exact(
    pair: tuple[str, str], cli: Cli, tmp_path: Path
) -> None:
    """Run 1 copies everything; a third of the rows change and 1,000 are deleted; run 2
    (differential) is killed once its comparison is done, before its writes are all
    done. The resume compares again, writes what is still different, deletes what is
    gone, and the target equals the source."""
    source, target = pair
    job = tmp_path / "job.yaml"
    job.write_text(
        f"name: nightly\nsource: {source}\ntarget: {target}\nmode: differential\n",
        encoding="utf-8",
    )
    code, text = cli.run("run", str(job))
    assert code == 0, text
    _sql(source, f"UPDATE events SET v = 'changed' WHERE {CHANGED}", DELETES)  # noqa: S608

    proc, _, task_id = cli.start_run(job)
    compared = cli.wait_for_progress(task_id, proc, ROWS - 1_000)  # the comparison's report
    assert proc.poll() is None, "run 2 finished before the kill"
    time.sleep(0.3)  # into the writes
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert compared == ROWS - 1_000
    assert _state(target) != _state(source), "the kill came after the writes"

    code, text = cli.resume(task_id)
    assert code == 0, text
    assert _state(target) == _state(source)
    figures = json.loads(cli.units(task_id)["events"]["figures"])
    assert figures["mode"] == "differential" and figures["verified"]
