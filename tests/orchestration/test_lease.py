"""One live runner per task: claims, refusals naming the owner, and expiry after a crash."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from datatrace_tasks.exceptions import TaskAlreadyRunning, UnitAlreadyRunning
from datatrace_tasks.orchestration.lease import task_lease, unit_lease
from datatrace_tasks.orchestration.manager import TaskManager
from datatrace_tasks.state.leases import LeaseChange, holder_is_gone, holder_name
from datatrace_tasks.state.store import Store
from datatrace_tasks.state.units import UnitStatus


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
        # 1.5 s, not less: a loaded machine (CI's two workers) can take 0.2 s between
        # two statements, and the lease would lapse before the refusal is tried.
        assert store.claim_unit(task_id, "a", "crashed:1", lease_seconds=1.5)
        assert not store.claim_unit(task_id, "a", "other:2", lease_seconds=30)
        time.sleep(1.7)
        assert store.claim_unit(task_id, "a", "other:2", lease_seconds=30)
        assert store.unit_lease_owner(task_id, "a") == "other:2"


class TestUnitRenewals:
    def test_one_thread_renews_every_unit_lease_held_then_stops(self, store: Store) -> None:
        """Two units held for three times their 0.6 s lease stay theirs (another holder
        is refused at the end), renewed by one shared thread, which is gone a beat after
        both leases are given back; the leases are then free. (An earlier test's renewer
        may still be ending its last beat: only threads started here count.)"""
        task_id = store.create_task(name="t", units=[("a", "a"), ("b", "b")])
        earlier = {t for t in threading.enumerate() if t.name == "datatrace-leases"}

        def renewers() -> list[threading.Thread]:
            alive = threading.enumerate()
            return [t for t in alive if t.name == "datatrace-leases" and t not in earlier]

        with (
            unit_lease(store, task_id, "a", lease_seconds=0.6, owner="me:1"),
            unit_lease(store, task_id, "b", lease_seconds=0.6, owner="me:1"),
        ):
            assert len(renewers()) == 1
            time.sleep(1.8)
            for unit in ("a", "b"):
                assert not store.claim_unit(task_id, unit, "other:2", lease_seconds=30)
                assert store.unit_lease_owner(task_id, unit) == "me:1"
        deadline = time.monotonic() + 5
        while renewers() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert renewers() == []
        assert store.claim_unit(task_id, "a", "other:2", lease_seconds=30)


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


class TestLeaseWithStatus:
    def test_start_takes_the_lease_and_running_together_or_neither(self, store: Store) -> None:
        """A start written with its lease claims the unit and marks it running in one
        write; while another live runner holds the unit, neither is written."""
        task_id = store.create_task(name="t", units=[("a", "a"), ("b", "b")])
        store.write_unit(task_id, "a", status=UnitStatus.RUNNING, lease=LeaseChange("me:1", 30))
        assert store.unit_lease_owner(task_id, "a") == "me:1"
        assert store.load_units(task_id)[0].status is UnitStatus.RUNNING
        assert store.claim_unit(task_id, "b", "other-host:7", lease_seconds=30)
        with pytest.raises(UnitAlreadyRunning, match="other-host:7"):
            store.write_unit(task_id, "b", status=UnitStatus.RUNNING, lease=LeaseChange("me:1", 30))
        assert store.load_units(task_id)[1].status is UnitStatus.PENDING
        assert store.unit_lease_owner(task_id, "b") == "other-host:7"

    def test_the_end_gives_back_only_the_writers_lease(self, store: Store) -> None:
        """`completed` with a release frees the writer's own lease, never another's."""
        task_id = store.create_task(name="t", units=[("a", "a"), ("b", "b")])
        assert store.claim_unit(task_id, "a", "me:1", lease_seconds=30)
        assert store.claim_unit(task_id, "b", "other-host:7", lease_seconds=30)
        for unit_id in ("a", "b"):
            store.write_unit(
                task_id, unit_id, status=UnitStatus.COMPLETED, lease=LeaseChange("me:1")
            )
        assert store.unit_lease_owner(task_id, "a") is None
        assert store.unit_lease_owner(task_id, "b") == "other-host:7"

    @pytest.mark.usefixtures("prefect_harness")
    def test_a_run_leaves_no_unit_lease_held(self, manager: TaskManager) -> None:
        """Completed units gave their leases back with `completed`, failed ones on the way out."""

        def work(unit: Any, _reporter: Any) -> None:
            if unit.id == "bad":
                raise ValueError("boom")

        task_id = manager.create_task("t", ["a", "b", "bad"])
        assert manager.execute_auto_mode(task_id, 2, work) == 2
        assert [manager.store.unit_lease_owner(task_id, u) for u in ("a", "b", "bad")] == [None] * 3
        assert {u.id: u.status for u in manager.store.load_units(task_id)} == {
            "a": UnitStatus.COMPLETED,
            "b": UnitStatus.COMPLETED,
            "bad": UnitStatus.FAILED,
        }


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


def _holder_process() -> subprocess.Popen[bytes]:
    """A real process of this host to hold leases, so a test can kill -9 it."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


class TestGoneHolders:
    """A holder on this host whose process is gone is dead at once; others wait out the lease."""

    def test_task_of_a_killed_local_runner_is_taken_over_at_once(self, store: Store) -> None:
        """Refused while the holder lives; after kill -9 of it, claimed at once (no expiry)."""
        task_id = store.create_task(name="t", units=[("a", "a")])
        proc = _holder_process()
        holder = f"{socket.gethostname()}:{proc.pid}:abc123"
        try:
            store.claim_task(task_id, holder, lease_seconds=300)
            with pytest.raises(TaskAlreadyRunning, match=holder):
                store.claim_task(task_id, holder_name(), lease_seconds=300)
            assert store.get_task(task_id).lease_is_live(300)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        assert not store.get_task(task_id).lease_is_live(300)
        mine = holder_name()
        store.claim_task(task_id, mine, lease_seconds=300)
        assert store.get_task(task_id).owner == mine

    def test_unit_of_a_killed_local_runner_is_taken_over_at_once(self, store: Store) -> None:
        """A unit lease held by a killed local process is claimed at once, a live one is not."""
        task_id = store.create_task(name="t", units=[("a", "a")])
        proc = _holder_process()
        holder = f"{socket.gethostname()}:{proc.pid}:abc123"
        try:
            assert store.claim_unit(task_id, "a", holder, lease_seconds=300)
            assert not store.claim_unit(task_id, "a", holder_name(), lease_seconds=300)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        mine = holder_name()
        assert store.claim_unit(task_id, "a", mine, lease_seconds=300)
        assert store.unit_lease_owner(task_id, "a") == mine

    def test_unreaped_zombie_counts_as_gone(self) -> None:
        """A killed child its parent has not waited for yet holds nothing any more."""
        proc = _holder_process()
        holder = f"{socket.gethostname()}:{proc.pid}:abc123"
        assert not holder_is_gone(holder)
        os.kill(proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while not holder_is_gone(holder) and time.monotonic() < deadline:
            time.sleep(0.05)
        try:
            assert holder_is_gone(holder)
        finally:
            proc.wait()

    @pytest.mark.parametrize(
        "holder",
        ["another-host:1:abc123", "not-a-holder-name", f"{socket.gethostname()}:notapid:abc"],
    )
    def test_a_remote_or_unreadable_holder_is_never_judged_gone(self, holder: str) -> None:
        """Only the heartbeat can tell about a runner on another host (or an odd name)."""
        assert not holder_is_gone(holder)

    def test_this_process_is_never_gone(self) -> None:
        """A claim made by this very process is alive."""
        assert not holder_is_gone(holder_name())
