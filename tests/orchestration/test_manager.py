"""TaskManager: the memory cache, sync to the store and monitor, and execute_auto_mode."""

from __future__ import annotations

import threading
import time

import pytest

from datatrace_tasks.exceptions import DuplicateUnitName, TaskNotFound, UnitNotFound
from datatrace_tasks.live.progress import ProgressMonitor
from datatrace_tasks.orchestration.manager import TaskManager
from datatrace_tasks.state.reporter import ProgressReporter
from datatrace_tasks.state.store import Store
from datatrace_tasks.state.units import TaskUnit, UnitStatus

pytestmark = pytest.mark.usefixtures("prefect_harness")


def statuses(manager: TaskManager, task_id: str) -> dict[str, str]:
    """Unit id to status, as the store has it."""
    return {u.id: u.status.value for u in manager.store.load_units(task_id)}


class TestMemoryOperations:
    def test_init_and_get(self, manager: TaskManager) -> None:
        """init_task_units creates pending units in memory only."""
        units = manager.init_task_units("mem", ["a", "b"])
        assert [u.status for u in units] == [UnitStatus.PENDING] * 2
        assert [u.id for u in manager.get_task_units("mem")] == ["a", "b"]
        with pytest.raises(TaskNotFound):
            manager.store.load_units("mem")

    def test_init_rejects_duplicates(self, manager: TaskManager) -> None:
        """Duplicate unit names are refused before anything is kept."""
        with pytest.raises(DuplicateUnitName, match="'a'"):
            manager.init_task_units("mem", ["a", "b", "a"])

    def test_plain_updates_do_not_touch_store(self, manager: TaskManager) -> None:
        """update_unit_status/progress and fail_unit change memory, not the database."""
        task_id = manager.create_task("t", ["a"])
        manager.update_unit_status(task_id, "a", UnitStatus.RUNNING)
        manager.update_unit_progress(task_id, "a", 5, 10)
        manager.fail_unit(task_id, "a", "bad")
        (unit,) = manager.get_task_units(task_id)
        assert (unit.status, unit.processed_records, unit.error_message) == (
            UnitStatus.FAILED,
            5,
            "bad",
        )
        assert statuses(manager, task_id) == {"a": "pending"}

    def test_clear_keeps_store(self, manager: TaskManager) -> None:
        """clear_task_units forgets memory; the next read reloads from the store."""
        task_id = manager.create_task("t", ["a"])
        manager.update_unit_status(task_id, "a", UnitStatus.RUNNING)
        manager.clear_task_units(task_id)
        assert manager.get_task_units(task_id)[0].status is UnitStatus.PENDING

    def test_unknown_unit(self, manager: TaskManager) -> None:
        """An unknown unit raises UnitNotFound naming it."""
        task_id = manager.create_task("t", ["a"])
        with pytest.raises(UnitNotFound, match="'zz'"):
            manager.update_unit_status(task_id, "zz", UnitStatus.RUNNING)


class TestSync:
    def test_status_with_sync_reaches_all_layers(self, manager: TaskManager) -> None:
        """A synced status change is in memory, in the store, in the event log and the monitor."""
        task_id = manager.create_task("t", ["a"])
        with manager.monitor.subscribe() as updates:
            manager.update_unit_status_with_sync(task_id, "a", UnitStatus.RUNNING)
            published = updates.get(timeout=1)
        assert published.unit.status is UnitStatus.RUNNING
        assert statuses(manager, task_id) == {"a": "running"}
        assert manager.store.events_after(0, task_id=task_id)[-1].status == "running"

    def test_progress_is_throttled(self, store: Store) -> None:
        """Many progress calls in one interval write one event; the last value still lands."""
        manager = TaskManager(store, progress_interval=0.5)
        task_id = manager.create_task("t", ["a"])
        before = len(manager.store.events_after(0, task_id=task_id))
        for i in range(1, 101):
            manager.update_unit_progress_with_sync(task_id, "a", i, 100)
        assert len(manager.store.events_after(0, task_id=task_id)) - before == 1
        deadline = time.monotonic() + 5
        while manager.store.load_units(task_id)[0].processed_records != 100:
            assert time.monotonic() < deadline, "the flusher never wrote the final value"
            time.sleep(0.05)

    def test_fifty_threads_lose_no_update(self, manager: TaskManager) -> None:
        """50 threads updating 50 units at once: final values exact in memory and the store."""
        names = [f"u{i:02d}" for i in range(50)]
        task_id = manager.create_task("t", names)
        barrier = threading.Barrier(50)

        def work(unit_id: str, last: int) -> None:
            barrier.wait()
            for n in range(1, last + 1):
                manager.update_unit_progress_with_sync(task_id, unit_id, n, last)

        threads = [threading.Thread(target=work, args=(n, 20 + i)) for i, n in enumerate(names)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        manager.flush_progress(task_id)
        expected = {n: 20 + i for i, n in enumerate(names)}
        assert {u.id: u.processed_records for u in manager.get_task_units(task_id)} == expected
        assert {u.id: u.processed_records for u in manager.store.load_units(task_id)} == expected


def sleeper(seconds: float, fail: set[str] | None = None) -> object:
    """A process function that sleeps, reports progress, and fails for chosen units."""
    lock = threading.Lock()
    state = {"running": 0, "peak": 0}

    def process(unit: TaskUnit, reporter: ProgressReporter) -> None:
        with lock:
            state["running"] += 1
            state["peak"] = max(state["peak"], state["running"])
        try:
            reporter.set_total(4)
            for i in range(4):
                time.sleep(seconds / 4)
                reporter.report(i + 1, {"batch": i})
            if fail and unit.id in fail:
                raise RuntimeError(f"{unit.id} broke")
        finally:
            with lock:
                state["running"] -= 1

    process.state = state  # type: ignore[attr-defined]
    return process


class TestExecuteAutoMode:
    def test_concurrency_limit_is_held_and_reached(self, manager: TaskManager) -> None:
        """With limit 4 and 20 sleeping units, at most and at least 4 run at once."""
        task_id = manager.create_task("limit", [f"u{i}" for i in range(20)])
        fn = sleeper(0.4)
        done = manager.execute_auto_mode(task_id, 4, fn)  # type: ignore[arg-type]
        assert done == 20
        assert fn.state["peak"] == 4  # type: ignore[attr-defined]
        assert set(statuses(manager, task_id).values()) == {"completed"}

    def test_success_life_cycle(self, manager: TaskManager) -> None:
        """A unit goes pending, running, completed in the store and the monitor."""
        monitor = ProgressMonitor()
        task_id = manager.create_task("life", ["a"])
        with monitor.subscribe() as updates:
            manager.execute_auto_mode(task_id, 1, sleeper(0.05), monitor)  # type: ignore[arg-type]
            seen: list[str] = []
            while not updates.empty():
                seen.append(updates.get().unit.status.value)
        assert seen[0] == "pending" and seen[1] == "running" and seen[-1] == "completed"
        events = [e.status for e in manager.store.events_after(0, task_id=task_id) if e.unit_id]
        assert events[0] == "running" and events[-1] == "completed"
        (unit,) = manager.store.load_units(task_id)
        assert (unit.processed_records, unit.percentage, unit.attempts) == (4, 100.0, 1)
        assert manager.store.get_task(task_id).status == "completed"

    def test_failure_life_cycle(self, manager: TaskManager) -> None:
        """A failing unit ends failed with its message; the task says how many failed."""
        task_id = manager.create_task("fail", ["a", "b"])
        done = manager.execute_auto_mode(task_id, 2, sleeper(0.05, {"b"}))  # type: ignore[arg-type]
        assert done == 1
        units = {u.id: u for u in manager.store.load_units(task_id)}
        assert units["b"].status is UnitStatus.FAILED
        assert units["b"].error_message == "RuntimeError: b broke"
        task = manager.store.get_task(task_id)
        assert task.status == "failed" and "1 failed" in task.message

    def test_retry_then_success(self, manager: TaskManager) -> None:
        """A unit that fails once and then succeeds ends completed after 2 attempts."""
        calls: dict[str, int] = {}

        def flaky(unit: TaskUnit, reporter: ProgressReporter) -> None:
            calls[unit.id] = calls.get(unit.id, 0) + 1
            reporter.report(1)
            if calls[unit.id] == 1:
                raise ConnectionError("blip")

        task_id = manager.create_task("retry", ["a"])
        done = manager.execute_auto_mode(task_id, 1, flaky, retries=2, retry_delay_seconds=0.01)
        assert done == 1
        (unit,) = manager.store.load_units(task_id)
        assert (unit.status, unit.attempts) == (UnitStatus.COMPLETED, 2)
        running = [
            e for e in manager.store.events_after(0, task_id=task_id) if e.status == "running"
        ]
        assert running and not any(e.status == "failed" for e in running)

    def test_skip_goes_on(self, manager: TaskManager) -> None:
        """Under skip, one failure does not stop the other units."""
        names = [f"u{i}" for i in range(6)]
        task_id = manager.create_task("skip", names, error_strategy="skip")
        done = manager.execute_auto_mode(task_id, 2, sleeper(0.05, {"u0"}))  # type: ignore[arg-type]
        assert done == 5
        assert statuses(manager, task_id)["u0"] == "failed"

    def test_pause_stops_all_and_resume_finishes(self, manager: TaskManager) -> None:
        """Under pause, the first failure stops the rest; a second run does only the unfinished."""
        names = [f"u{i}" for i in range(8)]
        task_id = manager.create_task("pause", names, error_strategy="pause")
        ran: list[str] = []

        def process(unit: TaskUnit, reporter: ProgressReporter) -> None:
            ran.append(unit.id)
            start = reporter.processed
            for i in range(start, 20):
                time.sleep(0.02)
                reporter.report(i + 1, {"at": i + 1})
                if unit.id == "u0" and i == 2 and len(ran) < 9:
                    raise RuntimeError("u0 broke")

        manager.execute_auto_mode(task_id, 2, process)
        after_first = statuses(manager, task_id)
        assert after_first["u0"] == "failed"
        assert after_first["u1"] == "paused"
        assert "running" not in after_first.values()
        assert sum(s == "pending" for s in after_first.values()) >= 5
        assert manager.store.get_task(task_id).status == "failed"
        paused_at = manager.store.load_units(task_id)[1].processed_records
        assert 0 < paused_at < 20

        ran.clear()
        manager.store.reset_units(task_id, ["u0"])
        done = manager.execute_auto_mode(task_id, 2, process)
        assert sorted(ran) == sorted(names)  # every unfinished unit, none completed before
        assert done == 8
        assert set(statuses(manager, task_id).values()) == {"completed"}

    def test_completed_units_do_not_run_again(self, manager: TaskManager) -> None:
        """A second run skips completed units and returns how many it finished."""
        task_id = manager.create_task("again", ["a", "b"])
        manager.execute_auto_mode(task_id, 2, sleeper(0.01, {"b"}))  # type: ignore[arg-type]
        seen: list[str] = []
        done = manager.execute_auto_mode(task_id, 2, lambda u, r: seen.append(u.id))
        assert (seen, done) == (["b"], 1)


class TestBadInput:
    def test_unknown_task(self, manager: TaskManager) -> None:
        """execute_auto_mode on an unknown task raises TaskNotFound naming it."""
        with pytest.raises(TaskNotFound, match="missing-id"):
            manager.execute_auto_mode("missing-id", 1, lambda u, r: None)

    def test_concurrency_below_one(self, manager: TaskManager) -> None:
        """Concurrency below 1 is a ValueError."""
        task_id = manager.create_task("t", ["a"])
        with pytest.raises(ValueError, match="concurrency"):
            manager.execute_auto_mode(task_id, 0, lambda u, r: None)

    def test_failing_listener_does_not_crash_the_flow(self, store: Store) -> None:
        """A listener failing on a status change is logged; the run goes on and returns."""

        class BrokenMonitor(ProgressMonitor):
            def publish(self, task_id: str, unit: TaskUnit) -> None:
                if unit.status is UnitStatus.RUNNING:
                    raise OSError("monitor down")
                super().publish(task_id, unit)

        manager = TaskManager(store, monitor=BrokenMonitor())
        task_id = manager.create_task("t", ["a", "b"])
        done = manager.execute_auto_mode(task_id, 2, lambda u, r: None)
        assert done == 2


class TestStoreOutage:
    """Unit writes survive a state store that is briefly unreachable, and only briefly."""

    @staticmethod
    def _flaky(manager: TaskManager, failures: int) -> list[int]:
        """Make the store's next `failures` unit writes fail as a dropped connection would."""
        from sqlalchemy.exc import OperationalError

        real = manager.store.write_unit
        calls = [0]

        def write_unit(*args: object, **kwargs: object) -> int | None:
            calls[0] += 1
            if calls[0] <= failures:
                raise OperationalError("UPDATE", {}, ConnectionError("server has gone away"))
            return real(*args, **kwargs)  # type: ignore[arg-type]

        manager.store.write_unit = write_unit  # type: ignore[method-assign]
        return calls

    def test_write_is_retried_until_the_store_is_back(self, manager: TaskManager) -> None:
        task_id = manager.create_task("t", ["a"])
        calls = self._flaky(manager, failures=3)
        manager.update_unit_progress_with_sync(task_id, "a", 7, 10, checkpoint={"k": 7})
        assert calls[0] == 4
        row = manager.store.unit_row(task_id, "a")
        assert row["processed_records"] == 7 and row["checkpoint"] == {"k": 7}

    def test_write_fails_after_the_retry_window(self, manager: TaskManager) -> None:
        from sqlalchemy.exc import OperationalError

        task_id = manager.create_task("t", ["a"])
        manager.store_retry_seconds = 0.3
        self._flaky(manager, failures=1_000)
        with pytest.raises(OperationalError):
            manager.update_unit_status_with_sync(task_id, "a", UnitStatus.RUNNING)
