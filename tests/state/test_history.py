"""A job's history: its runs (sync tasks under its name), newest first, with their sums."""

from __future__ import annotations

import time

from datatrace_tasks.state.store import Store
from datatrace_tasks.state.units import UnitStatus


def _run(store: Store, name: str, figures: dict[str, dict[str, int]], *, ok: bool = True) -> str:
    task_id = store.create_task(name=name, units=[(u, u) for u in figures], spec={"job": {}})
    for unit_id, done in figures.items():
        store.write_unit(task_id, unit_id, status=UnitStatus.RUNNING)
        store.write_unit(
            task_id, unit_id, status=UnitStatus.COMPLETED, figures=done, verification={"ok": ok}
        )
    store.set_task_status(task_id, "completed")
    return task_id


def test_runs_are_summed_per_task_newest_first(store: Store) -> None:
    """Each run sums its units' rows read, written and deleted; another job's runs and
    runs beyond the limit are left out."""
    first = _run(store, "nightly", {"a": {"rows_read": 10, "rows_written": 10}, "b": {}})
    time.sleep(0.01)  # created_at orders the runs
    _run(store, "other", {"a": {"rows_read": 99}})
    time.sleep(0.01)
    second = _run(
        store,
        "nightly",
        {"a": {"rows_read": 2, "rows_written": 2, "rows_deleted": 1}, "b": {"rows_deleted": 3}},
        ok=False,
    )
    runs = store.job_runs("nightly")
    assert [r.task_id for r in runs] == [second, first]
    newest, oldest = runs
    assert (newest.rows_read, newest.rows_written, newest.rows_deleted) == (2, 2, 4)
    assert (oldest.rows_read, oldest.rows_written, oldest.rows_deleted) == (10, 10, 0)
    assert (newest.units, newest.completed, newest.verified) == (2, 2, 0)
    assert oldest.verified == 2
    assert newest.seconds is not None and newest.seconds >= 0
    assert [r.task_id for r in store.job_runs("nightly", limit=1)] == [second]
    assert store.job_runs("never") == []


def _marked(value: int, *, verified: bool = True) -> dict[str, object]:
    mark = {"cursor": "ts", "value": value}
    return {"mode": "incremental", "verified": verified, "high_water": mark}


def test_the_mark_is_the_newest_verified_run_of_the_unit_under_the_jobs_name(
    store: Store,
) -> None:
    """A new task of the job finds the mark of the newest verified run of the same unit;
    an unverified later run, another unit and another job's runs do not count, and a
    newer verified run that set no mark (a full copy) clears it."""
    _run(store, "hourly", {"a": _marked(10), "b": _marked(99)})
    time.sleep(0.01)
    _run(store, "hourly", {"a": _marked(20)})
    time.sleep(0.01)
    _run(store, "hourly", {"a": _marked(30, verified=False)})
    _run(store, "other", {"a": _marked(77)})
    current = store.create_task(name="hourly", units=[("a", "a"), ("c", "c")], spec={})
    assert store.high_water(current, "a") == {"cursor": "ts", "value": 20}
    assert store.high_water(current, "c") is None
    assert store.high_water("no-such-task", "a") is None
    time.sleep(0.01)
    _run(store, "hourly", {"a": {"mode": "full", "verified": True}})
    assert store.high_water(current, "a") is None
