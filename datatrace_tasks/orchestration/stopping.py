"""Stopping a run from the terminal or a process manager without losing its place.

The first SIGINT (Ctrl-C) or SIGTERM asks the task to pause: every running unit
stops at its next batch boundary with its checkpoint, and `datatrace resume`
continues from there. A second signal aborts at once, as before; the lease and
the checkpoints still make that resumable, only less tidily.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, TypeVar

from datatrace_tasks.heartbeat import Heartbeat
from datatrace_tasks.state.cache import UnitCache

log = logging.getLogger("datatrace")

CANCEL_POLL_SECONDS = 1.0
"""How often the runner asks Prefect whether its flow run is being cancelled."""

SIGNALS = (signal.SIGINT, signal.SIGTERM)
T = TypeVar("T")


class StopRequest:
    """Which signal asked the run to stop, if any."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 plus the signal number (130 for Ctrl-C)."""
        return 128 + (self.signum or 0)


@contextmanager
def pause_on_signals(manager: UnitCache, task_id: str) -> Iterator[StopRequest]:
    """While the block runs, turn the first SIGINT/SIGTERM into a pause of `task_id`.

    Only the main thread can own signal handlers; elsewhere this does nothing.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handle(signum: int, _frame: FrameType | None) -> None:
        if request.signum is not None:
            raise KeyboardInterrupt  # second signal: stop now
        request.signum = signum
        log.warning("%s: pausing task %s at the next batch", signal.Signals(signum).name, task_id)
        # The store write happens off the signal handler: the main thread may hold a lock.
        threading.Thread(
            target=manager.request_pause, args=(task_id,), name="datatrace-pause", daemon=True
        ).start()

    previous = {sig: signal.signal(sig, handle) for sig in SIGNALS}
    try:
        yield request
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_interruptible(fn: Callable[[], T]) -> T:
    """Run `fn` in a worker thread while the main thread keeps handling signals.

    A flow run started in the main thread installs Prefect's own SIGTERM handler,
    which crashes the run instead of pausing it; from a worker thread it cannot.
    """
    outcome: dict[str, T] = {}
    failure: list[BaseException] = []

    def work() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # handed to the caller below
            failure.append(exc)

    thread = threading.Thread(target=work, name="datatrace-run", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.2)
    if failure:
        raise failure[0]
    return outcome["value"]


@contextmanager
def cancel_watch(manager: UnitCache, task_id: str) -> Iterator[threading.Event]:
    """Turn a cancellation of this flow run (or of a parent) into a cooperative pause.

    Prefect does not interrupt a running task body, and a worker's SIGTERM would
    leave the units running to the end: so a thread polls the flow runs' states and,
    on Cancelling, raises the task's pause flag. The units stop at their next batch
    and are recorded paused with their checkpoints; a later run resumes them.
    """
    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext

    cancelled = threading.Event()
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        yield cancelled
        return
    with get_client(sync_client=True) as client:
        try:
            ids = _flow_run_and_parents(client, context.flow_run)
        except Exception:  # no watch, but the run goes on: Ctrl-C and pause still work
            log.exception("cannot watch task %s for cancellation", task_id)
            ids = []

        def watch() -> bool:
            for flow_run_id in ids:
                if flow_run_cancelled(client, flow_run_id):
                    log.warning(
                        "flow run %s is cancelled: pausing sync task %s at the next batch "
                        "of each unit",
                        flow_run_id,
                        task_id,
                    )
                    cancelled.set()
                    manager.request_pause(task_id)
                    return False
            return bool(ids)

        with Heartbeat(CANCEL_POLL_SECONDS, watch, name="datatrace-cancel-watch"):
            yield cancelled


def _flow_run_and_parents(client: Any, flow_run: Any) -> list[Any]:
    """The ids of this flow run and of the flow runs it runs inside (at most 10)."""
    ids = [flow_run.id]
    parent = flow_run.parent_task_run_id
    while parent is not None and len(ids) < 10:
        flow_run_id = client.read_task_run(parent).flow_run_id
        if flow_run_id is None:
            break
        ids.append(flow_run_id)
        parent = client.read_flow_run(flow_run_id).parent_task_run_id
    return ids


def flow_run_cancelled(client: Any, flow_run_id: Any) -> bool:
    """Whether the flow run is cancelling or cancelled (an API briefly away says no)."""
    try:
        state = client.read_flow_run(flow_run_id).state
    except Exception:  # ask again later
        return False
    return state is not None and (state.is_cancelling() or state.is_cancelled())
