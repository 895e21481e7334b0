"""One background beat: a daemon thread that calls a function every few seconds.

Leases, slot leases, the progress flusher, the Prefect artifact mirror and the
cancellation watch all need the same thing: do something periodically while a
block of work runs, survive a failing beat (the store or the API may be briefly
away), and stop promptly and cleanly when the work ends.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType

log = logging.getLogger("datatrace")

Beat = Callable[[], bool | None]
"""Called once per interval; returning False ends the heartbeat (e.g. a lease was lost)."""


class Heartbeat:
    """Calls `beat` every `seconds` in a daemon thread, from `start()` until `stop()`.

    A beat that raises is logged and the next one comes on time. Used as a context
    manager it runs for the duration of the block.

    Args:
        seconds: the interval between two beats.
        beat: the work of one beat.
        name: the thread's name (shown in thread dumps and py-spy).
        final_beat: beat once more when stopped, so the last value is always sent.
    """

    def __init__(self, seconds: float, beat: Beat, *, name: str, final_beat: bool = False) -> None:
        self.seconds = seconds
        self._beat = beat
        self._name = name
        self._final_beat = final_beat
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def alive(self) -> bool:
        """Whether the beat thread is still running."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Heartbeat:
        """Start beating in a new daemon thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop beating and wait for the thread (and its final beat) to end."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def _loop(self) -> None:
        while True:
            stopping = self._stop.wait(self.seconds)
            if stopping and not self._final_beat:
                return
            try:
                if self._beat() is False:
                    return
            except Exception:
                log.exception(
                    "%s: one beat failed; the next comes in %.1f s", self._name, self.seconds
                )
            if stopping:
                return

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextmanager
def renewed(
    renew: Callable[[], bool],
    release: Callable[[], None],
    *,
    every: float,
    name: str,
    what: str,
) -> Iterator[None]:
    """Keep a lease while the block runs: renew it every `every` seconds, release it after.

    A renewal that fails is tried again at the next beat (a lease has slack); one that
    finds the lease gone ends the beat. A failed release is logged: the lease expires.
    """

    def beat() -> bool:
        if renew():
            return True
        log.error("lost %s to another holder", what)
        return False

    try:
        with Heartbeat(every, beat, name=name):
            yield
    finally:
        try:
            release()
        except Exception:
            log.exception("could not release %s; it will expire", what)
