"""The runner's claim on a task: one live runner per task, and crashes detected by lease."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from datatrace_tasks.store import Store

log = logging.getLogger("datatrace")


def runner_name() -> str:
    """`host:pid:nonce`, unique per claim, readable in the refusal a second runner gets."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@contextmanager
def task_lease(store: Store, task_id: str, *, lease_seconds: float) -> Iterator[str]:
    """Hold the task while the block runs, renewing the lease in a background thread.

    Raises:
        TaskAlreadyRunning: another runner's lease is fresh.
    """
    owner = runner_name()
    store.claim_task(task_id, owner, lease_seconds=lease_seconds)
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(lease_seconds / 3):
            try:
                if not store.renew_claim(task_id, owner):
                    log.error("lost the claim on task %s to another runner", task_id)
                    return
            except Exception:  # the store may be briefly down; the lease has slack
                log.exception("could not renew the claim on task %s", task_id)

    thread = threading.Thread(target=renew, name="datatrace-lease", daemon=True)
    thread.start()
    try:
        yield owner
    finally:
        stop.set()
        thread.join()
        try:
            store.release_task(task_id, owner)
        except Exception:
            log.exception("could not release task %s; its lease will expire", task_id)
