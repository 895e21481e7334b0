"""Disjoint key ranges: a big table copied side by side, each range resumable on its own."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import URL

from datatrace_tasks.exceptions import UnitPaused
from datatrace_tasks.sync.ranges import KeyRange, auto_ranges, from_checkpoint, to_checkpoint
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
