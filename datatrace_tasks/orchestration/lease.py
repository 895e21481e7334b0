"""Leases in the state store: one live runner per task, one per unit, crashes expire.

A task lease (`sync_tasks.owner`) keeps two runners off one task; a unit lease
(`task_unit_runtimes.lease_owner`) keeps two processes, on any hosts sharing the
store (Dask workers, several Prefect workers), off one unit. Both are taken by one
conditional UPDATE and renewed in the background while the work runs: the task lease
by a thread of its own, every unit lease of a process by one shared thread
(`UnitRenewals`), so a unit's start does not start a thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from datatrace_tasks.exceptions import DatabaseUnreachable, UnitAlreadyRunning
from datatrace_tasks.heartbeat import Heartbeat, renewed
from datatrace_tasks.state.leases import holder_name
from datatrace_tasks.state.store import Store

log = logging.getLogger("datatrace")


@contextmanager
def task_lease(store: Store, task_id: str, *, lease_seconds: float) -> Iterator[str]:
    """Hold the task while the block runs, renewing the lease in a background thread.

    Raises:
        TaskAlreadyRunning: another runner's lease is fresh.
    """
    owner = holder_name()
    store.claim_task(task_id, owner, lease_seconds=lease_seconds)

    with renewed(
        lambda: store.renew_claim(task_id, owner),
        lambda: store.release_task(task_id, owner),
        every=lease_seconds / 3,
        name="datatrace-lease",
        what=f"the claim on task {task_id}",
    ):
        yield owner


class UnitRenewals:
    """One heartbeat renews every unit lease this process holds in one store.

    A unit adds its lease when it starts and removes it before giving the lease back;
    the beat renews under the same lock, so no renewal comes after a removal (it would
    find the lease released and report it lost). The thread runs while any lease is
    held, and ends at the first beat that finds none. A lease another holder took is
    dropped, with an error logged.
    """

    _all: dict[tuple[int, float], UnitRenewals] = {}
    _guard = threading.Lock()

    def __init__(self, store: Store, lease_seconds: float) -> None:
        self.store, self.lease_seconds = store, lease_seconds
        self._leases: dict[tuple[str, str], str] = {}  # (task, unit) -> holder
        self._lock = threading.Lock()
        self._beat: Heartbeat | None = None

    @classmethod
    def of(cls, store: Store, lease_seconds: float) -> UnitRenewals:
        """The renewals of this store and lease length in this process."""
        with cls._guard:
            found = cls._all.get((id(store), lease_seconds))
            if found is None or found.store is not store:
                found = cls._all[id(store), lease_seconds] = cls(store, lease_seconds)
            return found

    def add(self, task_id: str, unit_id: str, holder: str) -> None:
        """Renew this lease from now on."""
        with self._lock:
            self._leases[task_id, unit_id] = holder
            if self._beat is None or not self._beat.alive:
                beat = Heartbeat(self.lease_seconds / 3, self._renew_all, name="datatrace-leases")
                self._beat = beat.start()

    def remove(self, task_id: str, unit_id: str) -> None:
        """Stop renewing this lease. The thread ends at its next beat if no lease is left:
        units that follow each other closely do not start a thread each."""
        with self._lock:
            self._leases.pop((task_id, unit_id), None)

    def _renew_all(self) -> bool:
        with self._lock:
            if not self._leases:
                self._beat = None  # under the lock: the next `add` starts a new beat
                return False
            for (task_id, unit_id), holder in list(self._leases.items()):
                try:
                    kept = self.store.renew_unit(
                        task_id, unit_id, holder, lease_seconds=self.lease_seconds
                    )
                except Exception:
                    log.exception("could not renew the lease on unit %s; next beat", unit_id)
                    continue
                if not kept:
                    log.error("lost the lease on unit %s of task %s", unit_id, task_id)
                    del self._leases[task_id, unit_id]
            return True


def _try_claim(claim: Callable[[], bool], unit_id: str, deadline: float) -> bool:
    """One claim attempt; a store that is briefly away counts as "not yet" until the deadline."""
    try:
        return claim()
    except UnitAlreadyRunning:
        return False
    except DatabaseUnreachable:
        if time.monotonic() >= deadline:
            raise
        log.warning("state store unreachable while claiming unit %s; trying again", unit_id)
        return False


@contextmanager
def unit_lease(
    store: Store,
    task_id: str,
    unit_id: str,
    *,
    lease_seconds: float,
    wait_seconds: float = 0.0,
    should_stop: Callable[[], bool] | None = None,
    owner: str | None = None,
    claim: Callable[[str], bool] | None = None,
    handed_on: bool = False,
) -> Iterator[str]:
    """Hold one unit while the block runs (on any host sharing the store), renewing its lease.

    Args:
        wait_seconds: how long to wait for another holder's lease to end (a runner
            killed with kill -9 leaves it until it expires) before giving up.
        should_stop: asked while waiting; when it turns true the wait ends at once.
        owner: the holder's name; one run passes the same name for every attempt of a
            unit, so a retry takes over a lease its failed attempt could not release.
        claim: takes the lease for the owner it is given (default: the store's claim
            alone); False, or UnitAlreadyRunning, while another holds it. One that also
            marks the unit running makes the start one store write.
        handed_on: when the block ends well, the lease is left to the status write that
            ends the unit (the completion hook gives it back); after an error it is
            given back here as always.

    Raises:
        UnitAlreadyRunning: another runner's lease on the unit is still live.
    """
    holder = owner or holder_name()
    take = claim or (lambda o: store.claim_unit(task_id, unit_id, o, lease_seconds=lease_seconds))
    deadline = time.monotonic() + wait_seconds
    while not _try_claim(lambda: take(holder), unit_id, deadline):
        stopping = should_stop is not None and should_stop()
        if stopping or time.monotonic() >= deadline:
            try:
                other = store.unit_lease_owner(task_id, unit_id)
            except DatabaseUnreachable:
                other = "another runner"
            raise UnitAlreadyRunning(
                f"unit {unit_id!r} of sync task {task_id!r} is already running in {other}"
            )
        time.sleep(min(0.25, max(deadline - time.monotonic(), 0.01)))

    ended_well = False
    renewals = UnitRenewals.of(store, lease_seconds)
    renewals.add(task_id, unit_id, holder)
    try:
        yield holder
        ended_well = True
    finally:
        renewals.remove(task_id, unit_id)
        if not (handed_on and ended_well):
            try:
                store.release_unit(task_id, unit_id, holder)
            except Exception:
                log.exception("could not release the lease on unit %s; it will expire", unit_id)
