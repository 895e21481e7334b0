"""ProgressMonitor's fan-out, and rows/s and ETAs computed from the event log."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from datatrace_tasks.live.progress import ProgressMonitor
from datatrace_tasks.live.rollup import UnitRate, task_progress, task_rollup
from datatrace_tasks.orchestration.manager import TaskManager
from datatrace_tasks.state.models import TaskUnitEventRow, utcnow
from datatrace_tasks.state.store import Store
from datatrace_tasks.state.units import TaskUnit, UnitStatus


def pace_events(store: Store, task_id: str, unit_id: str, rows_per_second: float) -> None:
    """Re-time a unit's events as if its rows had come at exactly `rows_per_second`,
    the newest one now, so the rate the event log gives is known to the digit."""
    anchor = utcnow()
    with store.session() as s:
        rows = list(
            s.scalars(
                select(TaskUnitEventRow).where(
                    TaskUnitEventRow.task_id == task_id, TaskUnitEventRow.unit_id == unit_id
                )
            )
        )
        last = max(r.processed_records for r in rows)
        for row in rows:
            behind = (last - row.processed_records) / rows_per_second
            row.created_at = anchor - timedelta(seconds=behind)


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
        published: list[int] = []

        def publish_ten() -> None:
            for n in range(10):
                monitor.publish("t", TaskUnit(id="u", name="u", processed_records=n))
                published.append(n)

        with monitor.subscribe() as q:
            # In a daemon thread joined with a timeout: a blocking publish fails the test
            # (and its stuck thread cannot keep the interpreter alive) instead of hanging it.
            publisher = threading.Thread(target=publish_ten, name="publisher", daemon=True)
            publisher.start()
            publisher.join(timeout=5)
            assert not publisher.is_alive(), f"publish blocked after {len(published)} updates"
            assert published == list(range(10))
            assert q.qsize() == 2

    def test_units_keeps_the_latest_until_forgotten(self) -> None:
        """`units` shows each unit's latest state; `forget` drops the task's view."""
        monitor = ProgressMonitor()
        monitor.publish("t", TaskUnit("a", "a", UnitStatus.RUNNING, 10, 2))
        monitor.publish("t", TaskUnit("a", "a", UnitStatus.RUNNING, 10, 7))
        monitor.publish("other", TaskUnit("b", "b"))
        assert [u.processed_records for u in monitor.units("t")] == [7]
        monitor.forget("t")
        assert monitor.units("t") == []
        assert len(monitor.units("other")) == 1


class TestRollup:
    def test_rollup_counts_units_and_rows(self) -> None:
        """The rollup counts units by status, sums rows of all units and speeds of all."""
        units = [
            TaskUnit("a", "a", UnitStatus.COMPLETED, 10, 10),
            TaskUnit("b", "b", UnitStatus.RUNNING, 30, 5),
            TaskUnit("c", "c", UnitStatus.FAILED, 10, 0, "x"),
        ]
        rates = {"a": UnitRate("a", 0.0, 0.0), "b": UnitRate("b", 5.0, 5.0)}
        rollup = task_rollup("t", units, rates)
        assert rollup.units_by_status["completed"] == 1
        assert rollup.units_by_status["running"] == 1
        assert (rollup.processed_records, rollup.total_records) == (15, 50)
        assert rollup.percentage == 30.0
        assert (rollup.rows_per_second, rollup.eta_seconds) == (5.0, 7.0)
        assert rollup.to_dict()["percentage"] == 30.0

    def test_eta_is_zero_when_done_and_unknown_without_speed(self) -> None:
        """Nothing left is an ETA of 0; rows left at no speed is an unknown ETA."""
        done = task_rollup("t", [TaskUnit("a", "a", UnitStatus.COMPLETED, 4, 4)], {})
        stalled = task_rollup("t", [TaskUnit("a", "a", UnitStatus.PAUSED, 4, 1)], {})
        assert done.eta_seconds == 0.0
        assert stalled.eta_seconds is None

    def test_rates_come_from_the_event_log(self, store: Store) -> None:
        """A running unit's speed is rows over time of its events in the window; its ETA
        and the task's follow; units not running have no speed."""
        manager = TaskManager(store, progress_interval=0)
        task_id = manager.create_task("t", ["a", "b", "c"], totals={"a": 1000, "b": 50, "c": 5})
        for unit in ("a", "b", "c"):
            manager.update_unit_status_with_sync(task_id, unit, UnitStatus.RUNNING)
        manager.update_unit_progress_with_sync(task_id, "c", 5, force=True)
        manager.update_unit_status_with_sync(task_id, "c", UnitStatus.COMPLETED)
        for done in range(100, 700, 100):
            manager.update_unit_progress_with_sync(task_id, "a", done, force=True)
        pace_events(store, task_id, "a", 100.0)  # 0 rows 6 s ago ... 600 rows now
        progress = task_progress(store, task_id)
        assert progress.rates["a"].rows_per_second == pytest.approx(100.0)
        assert progress.rates["a"].eta_seconds == pytest.approx(4.0)
        assert (progress.rates["b"].rows_per_second, progress.rates["b"].eta_seconds) == (0, None)
        assert progress.rates["c"].eta_seconds == 0.0
        assert [r.unit_id for r in progress.running_rates()] == ["a", "b"]
        assert progress.rollup.rows_per_second == pytest.approx(100.0)
        assert progress.rollup.eta_seconds == pytest.approx((1055 - 605) / 100.0)
        assert progress.rates["a"].to_dict() == {
            "id": "a",
            "rows_per_second": 100.0,
            "eta_seconds": 4.0,
        }
