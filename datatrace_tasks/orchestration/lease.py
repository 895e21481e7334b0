"""Leases in the state store: one live runner per task, one per unit, crashes expire.

A task lease (`sync_tasks.owner`) keeps two runners off one task; a unit lease
(`task_unit_runtimes.lease_owner`) keeps two processes, on any hosts sharing the
store (Dask workers, several Prefect workers), off one unit. Both are taken by one
conditional UPDATE and renewed by a background thread while the work runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from datatrace_tasks.exceptions import DatabaseUnreachable, UnitAlreadyRunning
from datatrace_tasks.heartbeat import renewed
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

    def release() -> None:
        if not (handed_on and ended_well):
            store.release_unit(task_id, unit_id, holder)

    with renewed(
        lambda: store.renew_unit(task_id, unit_id, holder, lease_seconds=lease_seconds),
        release,
        every=lease_seconds / 3,
        name=f"datatrace-lease-{unit_id}",
        what=f"the lease on unit {unit_id} of task {task_id}",
    ):
        yield holder
        ended_well = True
