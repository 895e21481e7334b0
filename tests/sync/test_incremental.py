"""`mode: incremental`: after a full first copy, each run upserts only the rows whose
cursor reached the last verified run's mark (minus the lookback), verifies that window
on both servers, and only then hands on a new mark."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from datatrace_tasks.exceptions import JobFileInvalid, TableUnsupported, UnitPaused
from datatrace_tasks.sync.checkpoint import decode_value
from datatrace_tasks.sync.incremental import _sql_literal
from datatrace_tasks.sync.job import job_from_dict
from tests.sync.helpers import TARGETS, SyncKit, execute, fetch

ROWS = "SELECT id, v FROM events ORDER BY id"


@pytest.fixture
def events(mysql_schema: Callable[[], URL]) -> URL:
    """A source with `events` (a DATETIME(6) cursor) and `ticks` (an integer cursor)."""
    url = mysql_schema()
    execute(
        url,
        "CREATE TABLE events (id INT PRIMARY KEY, v VARCHAR(20),"
        " updated_at DATETIME(6) NOT NULL, note TEXT)",
        "CREATE TABLE ticks (id INT PRIMARY KEY, version BIGINT NOT NULL, v INT)",
    )
    rows = [
        {"id": i, "v": f"row {i}", "ts": f"2024-01-01 10:{i // 60:02d}:{i % 60:02d}.{i:06d}"}
        for i in range(1, 301)
    ]
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO events VALUES (:id, :v, :ts, NULL)"), rows)
        conn.execute(
            sa.text("INSERT INTO ticks VALUES (:id, :version, :id)"),
            [{"id": i, "version": i * 10} for i in range(1, 101)],
        )
    engine.dispose()
    return url


def _change_events(url: URL) -> None:
    """Two updates (one of the first key), an insert and a delete, all after the mark."""
    execute(
        url,
        "UPDATE events SET v = 'changed', updated_at = '2024-01-02 00:00:00.000001'"
        " WHERE id IN (1, 150)",
        "INSERT INTO events VALUES (1000, 'new', '2024-01-02 00:00:00.000002', 'x')",
        "DELETE FROM events WHERE id = 7",
    )


def _job(sync: SyncKit, source: URL, target: URL, **options: Any) -> Any:
    return sync.job(source, target, mode="incremental", cursor="updated_at", **options)


@pytest.mark.parametrize("kind", TARGETS)
def test_incremental_copies_only_the_rows_past_the_mark(
    kind: str, events: URL, sync: SyncKit
) -> None:
    """The first run copies all 300 rows and sets the mark at the newest cursor; after two
    updates and an insert the second run writes just those 3 rows (lookback 0) and the
    row at the mark itself, verifies them, and moves the mark on. The deleted row stays
    on the target: this mode does not see deletes."""
    target = sync.target(kind)
    job = _job(sync, events, target, lookback=0, batch_size=2)
    first = sync.run(job, "events")
    assert first.extra["copy"]["path"] != "incremental"  # nothing on the target yet
    mark = first.extra["high_water"]
    assert decode_value(mark["value"]).isoformat() == "2024-01-01T10:05:00.000300"
    _change_events(events)
    second = sync.run(job, "events", sync.reporter(high_water=mark))
    stats = second.extra["copy"]
    assert stats["path"] == "incremental"
    # The window goes through the target's bulk path, as a full copy does.
    assert stats["write_path"] == {"mysql": "load", "postgres": "copy"}.get(kind, "upsert")
    assert stats["rows_read"] == 4  # id 1, 150, 1000 and 300 (at the mark: `>=`)
    assert second.extra["verification"]["ok"]
    assert second.extra["verification"]["source_rows"] == 4
    assert "updated_at >= 2024-01-01 10:05:00.000300" in second.extra["verification"]["scope"]
    expected = sorted([*fetch(events, ROWS), (7, "row 7")])
    assert fetch(target, ROWS) == expected
    assert decode_value(second.extra["high_water"]["value"]).isoformat().startswith("2024-01-02")


def test_lookback_takes_rows_that_committed_late(events: URL, sync: SyncKit) -> None:
    """A row committed after the mark was read but stamped 3 s before it is taken by the
    next run with the default lookback of 5 s, and missed by a lookback of 0."""
    target = sync.target("sqlite")
    job = _job(sync, events, target)
    mark = sync.run(job, "events").extra["high_water"]
    execute(events, "UPDATE events SET v = 'late', updated_at = '2024-01-01 10:04:57' WHERE id = 9")
    zero = _job(sync, events, target, lookback=0)
    missed = sync.run(zero, "events", sync.reporter(high_water=mark))
    assert missed.extra["copy"]["rows_read"] == 1  # the row at the mark only
    taken = sync.run(job, "events", sync.reporter(high_water=mark))
    assert taken.extra["copy"]["rows_read"] == 6  # 10:04:55 and later: ids 295..300 and 9
    assert (9, "late") in fetch(target, ROWS)


def test_an_integer_cursor_looks_back_by_values(events: URL, sync: SyncKit) -> None:
    """`version` grows by 10 per row; lookback 15 goes back over one more row."""
    target = sync.target("sqlite")
    job = sync.job(events, target, mode="incremental", cursor="version", lookback=15)
    mark = sync.run(job, "ticks").extra["high_water"]
    assert mark == {"cursor": "version", "value": 1000}
    execute(events, "UPDATE ticks SET v = -1, version = 1001 WHERE id = 3")
    unit = sync.run(job, "ticks", sync.reporter(high_water=mark))
    assert unit.extra["copy"]["rows_read"] == 3  # versions 990, 1000, 1001
    assert unit.extra["high_water"]["value"] == 1001
    assert fetch(target, "SELECT v FROM ticks WHERE id = 3") == [(-1,)]


def test_a_resumed_run_sets_the_mark_it_read_before_copying(events: URL, sync: SyncKit) -> None:
    """Paused after its first batch, the window resumes after its last key with the mark
    it read at its start: a row changed while it was down (below that key) is raised
    above the mark, so the next run takes it instead of it being lost."""
    target = sync.target("mysql")
    job = _job(sync, events, target, lookback=0, batch_size=1)
    mark = sync.run(job, "events").extra["high_water"]
    _change_events(events)
    paused = sync.reporter(high_water=mark, stop_after=2)
    with pytest.raises(UnitPaused):
        sync.run(job, "events", paused)
    assert paused.checkpoint is not None and "incremental" in paused.checkpoint
    execute(events, "UPDATE events SET v = 'gap', updated_at = '2024-01-03 00:00:00' WHERE id = 2")
    resumed = sync.reporter(paused.checkpoint, high_water=mark)
    unit = sync.run(job, "events", resumed)
    assert unit.extra["copy"]["resumed_after"] is not None
    assert decode_value(unit.extra["high_water"]["value"]).isoformat().startswith("2024-01-02")
    nxt = sync.run(job, "events", sync.reporter(high_water=unit.extra["high_water"]))
    assert nxt.extra["copy"]["rows_read"] >= 1
    assert (2, "gap") in fetch(target, ROWS)


def test_no_mark_without_verification(events: URL, sync: SyncKit) -> None:
    """A run that does not verify sets no mark: the next run starts from the last one
    that did (here: none, so a full copy again)."""
    target = sync.target("sqlite")
    job = _job(sync, events, target)
    from datatrace_tasks.state.units import TaskUnit
    from datatrace_tasks.sync.copy import copy_table
    from datatrace_tasks.sync.engines import Databases

    unit = TaskUnit(id="events", name="events")
    dbs = Databases(job.source_url, job.target_url)
    try:
        copy_table(dbs, job, unit, sync.reporter(), verify=False)
    finally:
        dbs.dispose()
    assert "high_water" not in unit.extra


def test_a_table_without_the_cursor_is_refused_before_any_row(events: URL, sync: SyncKit) -> None:
    """`ticks` has no `updated_at`: the unit fails naming the table and the column, and
    the target gets no table."""
    target = sync.target("sqlite")
    with pytest.raises(TableUnsupported, match="'ticks' has no column 'updated_at'"):
        sync.run(_job(sync, events, target), "ticks")
    assert "ticks" not in sa.inspect(sa.create_engine(target)).get_table_names()
    with pytest.raises(TableUnsupported, match="cursor 'v' is varchar"):
        sync.run(sync.job(events, target, mode="incremental", cursor="v"), "events")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mode": "incremental"}, "incremental needs cursor"),
        ({"cursor": "updated_at"}, "cursor is used by mode: incremental only"),
        (
            {"mode": "incremental", "cursor": "t", "write_mode": "append"},
            "incremental needs write_mode: upsert",
        ),
        ({"mode": "incremental", "cursor": "t", "lookback": -1}, "lookback"),
    ],
)
def test_incremental_job_options_are_validated(options: dict[str, Any], message: str) -> None:
    """A cursor without the mode, the mode without a cursor, a write mode that cannot
    rewrite rows and a negative lookback are each refused with the reason."""
    with pytest.raises(JobFileInvalid, match=message):
        job_from_dict(
            {"name": "x", "source": "mysql+pymysql://u@h/db", "target": "sqlite://", **options}
        )


def test_plan_names_the_mode_and_refuses_a_table_without_the_cursor(
    events: URL, sync: SyncKit
) -> None:
    """`plan` says what incremental does and does not see, marks a table the target holds
    as copied by its cursor, and refuses the table that lacks the cursor, with the reason."""
    from datatrace_tasks.sync.plan import plan_job

    target = sync.target("sqlite")
    job = _job(sync, events, target)
    sync.run(job, "events")
    plan = plan_job(job)
    by_table = {u.table: u for u in plan.units}
    assert by_table["events"].action.endswith("; incremental: rows by updated_at")
    assert "has no column 'updated_at'" in (by_table["ticks"].refusal or "")
    assert "deletes on the source are not seen" in plan.notes[0]


@pytest.mark.parametrize(
    ("mark", "text"),
    [
        (dt.datetime(2024, 1, 1, 10, 4, 57), "'2024-01-01 10:04:57'"),
        (dt.datetime(2024, 1, 1, 10, 4, 57, 300), "'2024-01-01 10:04:57.000300'"),
        (dt.date(2024, 1, 2), "'2024-01-02'"),
        (-42, "-42"),
    ],
)
def test_a_window_mark_is_written_as_the_drivers_send_it(mark: Any, text: str) -> None:
    """The window's row filter holds the mark in the form pymysql and sqlite3 send a
    parameter of its type: microseconds only when there are some. Anything else is
    refused rather than written into SQL."""
    assert _sql_literal(mark) == text
    with pytest.raises(TypeError, match="integer, date or datetime"):
        _sql_literal("1; DROP TABLE events")
