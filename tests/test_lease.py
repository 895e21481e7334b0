"""One live runner per task: claims, refusals naming the owner, and expiry after a crash."""

from __future__ import annotations

import time

import pytest

from datatrace_tasks.exceptions import TaskAlreadyRunning
from datatrace_tasks.lease import task_lease
from datatrace_tasks.manager import TaskManager
from datatrace_tasks.store import Store


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
