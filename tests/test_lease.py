"""One live runner per task: claims, refusals naming the owner, and expiry after a crash."""

from __future__ import annotations

import time

import pytest

from datatrace_tasks.exceptions import TaskAlreadyRunning, UnitAlreadyRunning
from datatrace_tasks.orchestration.lease import task_lease, unit_lease
from datatrace_tasks.orchestration.manager import TaskManager
from datatrace_tasks.state.store import Store


class TestClaims:
    def test_second_claim_is_refused_naming_the_owner(self, store: Store) -> None:
        """While one runner holds a task, another is refused with the holder's name."""
        task_id = store.create_task(name="t", units=[("a", "a")])
        store.claim_task(task_id, "host-a:1", lease_seconds=30)
        with pytest.raises(TaskAlreadyRunning, match="host-a:1"):
            store.claim_task(task_id, "host-b:2", lease_seconds=30)

    def test_expired_lease_can_be_taken(self, store: Store) -> None:
        """A runner that stopped renewing (crashed) loses the task once its lease expires."""
        task_id = store.create_task(name="t", units=[("a", "a")])
        store.claim_task(task_id, "crashed:1", lease_seconds=0.2)
        time.sleep(0.4)
        store.claim_task(task_id, "fresh:2", lease_seconds=0.2)
        assert store.get_task(task_id).owner == "fresh:2"

    def test_release_frees_the_task(self, store: Store) -> None:
        """A released task can be claimed at once by anyone."""
        task_id = store.create_task(name="t", units=[("a", "a")])
        with task_lease(store, task_id, lease_seconds=30) as owner:
            assert store.get_task(task_id).owner == owner
        assert store.get_task(task_id).owner is None
        store.claim_task(task_id, "next:3", lease_seconds=30)


class TestUnitLease:
    def test_a_held_unit_is_refused_naming_the_holder(self, store: Store) -> None:
        """While one runner holds a unit, a second is refused with the holder's name."""
        task_id = store.create_task(name="t", units=[("a", "a"), ("b", "b")])
        with unit_lease(store, task_id, "a", lease_seconds=30) as owner:
            with (
                pytest.raises(UnitAlreadyRunning, match=owner),
                unit_lease(store, task_id, "a", lease_seconds=30),
            ):
                pass
            with unit_lease(store, task_id, "b", lease_seconds=30):
                pass  # another unit of the same task is free
        with unit_lease(store, task_id, "a", lease_seconds=30):
            pass  # released on exit

    def test_an_expired_unit_lease_can_be_taken(self, store: Store) -> None:
        """A crashed runner's unit lease expires and the unit can be claimed again."""
        task_id = store.create_task(name="t", units=[("a", "a")])
        assert store.claim_unit(task_id, "a", "crashed:1", lease_seconds=0.2)
        assert not store.claim_unit(task_id, "a", "other:2", lease_seconds=30)
        time.sleep(0.4)
        assert store.claim_unit(task_id, "a", "other:2", lease_seconds=30)
        assert store.unit_lease_owner(task_id, "a") == "other:2"


@pytest.mark.usefixtures("prefect_harness")
class TestRunRefused:
    def test_execute_refused_while_another_runner_holds_it(self, manager: TaskManager) -> None:
        """execute_auto_mode on a task another live runner holds is refused; nothing runs."""
        task_id = manager.create_task("t", ["a"])
        manager.store.claim_task(task_id, "other-host:99", lease_seconds=60)
        ran: list[str] = []
        with pytest.raises(TaskAlreadyRunning, match="other-host:99"):
            manager.execute_auto_mode(task_id, 1, lambda u, r: ran.append(u.id))
        assert ran == []
        assert manager.store.load_units(task_id)[0].status.value == "pending"


class TestUnitLeaseWait:
    def test_waits_out_a_dead_runners_unit_lease(self, store: Store) -> None:
        """A resume waits for a killed runner's unit lease to expire, then takes the unit."""
        task_id = store.create_task(name="t", units=[("a", "a")])
        assert store.claim_unit(task_id, "a", "killed:1", lease_seconds=0.5)
        with unit_lease(store, task_id, "a", lease_seconds=30, wait_seconds=5) as owner:
            assert store.unit_lease_owner(task_id, "a") == owner

    def test_a_pause_ends_the_wait(self, store: Store) -> None:
        """Waiting for a held unit stops as soon as the task is asked to pause."""
        task_id = store.create_task(name="t", units=[("a", "a")])
        assert store.claim_unit(task_id, "a", "live:1", lease_seconds=60)
        asked: list[bool] = []

        def pausing() -> bool:
            asked.append(True)
            return True

        with (
            pytest.raises(UnitAlreadyRunning, match="live:1"),
            unit_lease(
                store, task_id, "a", lease_seconds=30, wait_seconds=600, should_stop=pausing
            ),
        ):
            pass
        assert asked == [True]

    def test_the_same_owner_takes_its_unreleased_lease_back(self, store: Store) -> None:
        """A retry of the same run reclaims the lease its failed attempt could not release."""
        task_id = store.create_task(name="t", units=[("a", "a")])
        assert store.claim_unit(task_id, "a", "run-1", lease_seconds=60)
        with unit_lease(store, task_id, "a", lease_seconds=30, owner="run-1") as owner:
            assert owner == "run-1"
        assert store.unit_lease_owner(task_id, "a") is None
