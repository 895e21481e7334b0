"""ProgressMonitor: fan-out to subscribers and task rollups."""

from __future__ import annotations

from datatrace_tasks.live.progress import ProgressMonitor
from datatrace_tasks.state.units import TaskUnit, UnitStatus


class TestMonitor:
    def test_every_subscriber_gets_every_update(self) -> None:
        """Two subscribers each receive each published update, in order."""
        monitor = ProgressMonitor()
        with monitor.subscribe() as a, monitor.subscribe() as b:
            for n in range(3):
                monitor.publish("t", TaskUnit(id="u", name="u", processed_records=n))
            got_a = [a.get_nowait().unit.processed_records for _ in range(3)]
            got_b = [b.get_nowait().unit.processed_records for _ in range(3)]
        assert got_a == got_b == [0, 1, 2]

    def test_full_subscriber_does_not_block(self) -> None:
        """A subscriber that stops reading loses updates; publish never blocks."""
        monitor = ProgressMonitor(max_queue=2)
        with monitor.subscribe() as q:
            for n in range(10):
                monitor.publish("t", TaskUnit(id="u", name="u", processed_records=n))
            assert q.qsize() == 2

    def test_rollup_counts_units_and_rows(self) -> None:
        """The rollup counts units by status and sums rows of all units."""
        monitor = ProgressMonitor()
        monitor.publish("t", TaskUnit("a", "a", UnitStatus.COMPLETED, 10, 10))
        monitor.publish("t", TaskUnit("b", "b", UnitStatus.RUNNING, 30, 5))
        monitor.publish("t", TaskUnit("c", "c", UnitStatus.FAILED, 10, 0, "x"))
        rollup = monitor.rollup("t")
        assert rollup.units_by_status["completed"] == 1
        assert rollup.units_by_status["running"] == 1
        assert (rollup.processed_records, rollup.total_records) == (15, 50)
        assert rollup.percentage == 30.0
        assert rollup.to_dict()["percentage"] == 30.0
