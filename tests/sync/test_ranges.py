"""Disjoint key ranges: a big table copied side by side, each range resumable on its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from datatrace_tasks.exceptions import UnitPaused
from datatrace_tasks.state.units import TaskUnit
from datatrace_tasks.sync import job_from_dict, make_process_fn
from datatrace_tasks.sync.ranges import KeyRange, auto_ranges, from_checkpoint, to_checkpoint
from datatrace_tasks.testing import MemoryReporter
from tests.conftest import MYSQL_ENV, _scratch_database
from tests.sync.helpers import TARGETS, SyncKit, fetch

RANGES, BATCH, ROWS = 3, 50, 1000


class TestCheckpointForm:
    """The checkpoint JSON of one range and of several."""

    def test_one_open_range_keeps_the_single_range_form(self) -> None:
        """One range over the whole table is stored as `{"last_key", "rows"}`, as before."""
        cp = to_checkpoint([KeyRange(None, None, (7,), 7)])
        assert cp == {"last_key": [7], "rows": 7}
        assert from_checkpoint(cp) == [KeyRange(None, None, (7,), 7)]

    def test_several_ranges_round_trip(self) -> None:
        """Bounds, last keys, counts and done flags survive the JSON form."""
        ranges = [KeyRange(None, (10,), (10,), 10, True), KeyRange((10,), None, None, 0)]
        assert from_checkpoint(to_checkpoint(ranges)) == ranges
        assert to_checkpoint(ranges)["rows"] == 10

    def test_auto_ranges_grow_with_the_table(self) -> None:
        """Small tables stay whole; big ones get up to the cap; the job's number wins."""
        assert auto_ranges(1000, 400, None) == 1
        assert auto_ranges(10_000_000, 5000, None) == 3
        assert auto_ranges(10, 5000, 4) == 4


@pytest.mark.mysql
class TestMultiRangeResume:
    """An interrupted multi-range copy resumes every range after its last committed batch."""

    @pytest.mark.parametrize("kind", TARGETS)
    @pytest.mark.parametrize("lose", [False, True], ids=["clean-pause", "crash-before-save"])
    def test_resume_continues_every_range(
        self, kind: str, lose: bool, edge_source: URL, sync: SyncKit
    ) -> None:
        """Stop mid-table with 3 ranges, resume: target equals source, re-reads <= 3 batches."""
        target = sync.target(kind)
        job = sync.job(edge_source, target, batch_size=BATCH, ranges=RANGES)
        first = sync.reporter(stop_after=6, lose_last_checkpoint=lose)
        with pytest.raises(UnitPaused):
            sync.run(job, "big", first)
        saved = first.checkpoint
        assert saved is not None and len(saved["ranges"]) == RANGES
        assert 0 < saved["rows"] < ROWS
        assert saved["rows"] == sum(r["rows"] for r in saved["ranges"])
        committed = fetch(target, "SELECT COUNT(*) FROM big")[0][0]
        assert saved["rows"] <= committed <= saved["rows"] + RANGES * BATCH

        second = sync.reporter(saved)
        unit = sync.run(job, "big", second)
        reread = saved["rows"] + unit.extra["copy"]["rows_read"] - ROWS
        assert 0 <= reread <= RANGES * BATCH
        assert second.reports[-1][0] == ROWS
        assert unit.extra["verification"]["target_rows"] == ROWS
        order = "SELECT id, v FROM big ORDER BY id"  # ts is checked by the verification
        assert fetch(target, order) == fetch(edge_source, order)
        assert fetch(target, "SELECT COUNT(DISTINCT id), COUNT(*) FROM big") == [(ROWS, ROWS)]

    def test_ranges_cover_a_composite_key_without_gaps(
        self, edge_source: URL, sync: SyncKit
    ) -> None:
        """A (DATETIME(6), DECIMAL) key split into 4 ranges copies every row once."""
        target = sync.target("mysql")
        unit = sync.run(sync.job(edge_source, target, batch_size=4, ranges=4), "dated")
        assert unit.extra["copy"]["ranges"] == 4
        assert unit.extra["copy"]["rows_read"] == 60
        assert unit.extra["verification"]["target_rows"] == 60

    def test_each_range_reports_through_one_thread(self, edge_source: URL, sync: SyncKit) -> None:
        """Reports are absolute and increasing, at most one per batch, the last one complete."""
        rep = sync.reporter()
        job = sync.job(edge_source, sync.target("sqlite"), batch_size=BATCH, ranges=RANGES)
        unit = sync.run(job, "big", rep)
        counts = [p for p, _ in rep.reports]
        assert counts == sorted(counts) and counts[-1] == ROWS
        assert len(counts) <= unit.extra["copy"]["batches"]  # batches arriving together: one
        assert rep.checkpoint["rows"] == ROWS


@pytest.fixture
def few_rows_source(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty source database on the backend the test asks for (MariaDB or SQLite)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'src.db'}"
    else:
        yield from _scratch_database(MYSQL_ENV)


@pytest.mark.parametrize(
    "few_rows_source", ["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)], indirect=True
)
class TestMoreRangesThanRows:
    """Asking for more key ranges than a table has rows still copies it exactly."""

    @pytest.mark.parametrize("rows", [1, 2, 3, 4])
    def test_more_ranges_than_rows_copy_every_row_once(
        self, tmp_path: Path, few_rows_source: str, rows: int
    ) -> None:
        """`ranges: 5` on a table of 1 to 4 rows (once a negative OFFSET, an SQL error on
        MariaDB): the copy ends with exactly the source's rows, none skipped, none doubled."""
        source, target = few_rows_source, f"sqlite:///{tmp_path / 'dst.db'}"
        engine = sa.create_engine(source)
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE few (id INTEGER PRIMARY KEY, v VARCHAR(10))")
            for i in range(1, rows + 1):
                conn.exec_driver_sql(f"INSERT INTO few VALUES ({i * 7}, 'v{i}')")  # noqa: S608
        engine.dispose()
        job = job_from_dict(
            {"name": "few", "source": source, "target": target, "ranges": 5, "batch_size": 1},
            where="test job",
        )
        process = make_process_fn(job)
        try:
            process(TaskUnit(id="few", name="few"), MemoryReporter())
        finally:
            process.close()
        expected = [(i * 7,) for i in range(1, rows + 1)]
        assert fetch(target, "SELECT id FROM few ORDER BY id") == expected
