"""Who holds a lease, and whether that holder still lives: the one liveness rule.

A lease holder is named `host:pid:nonce`. A lease is live while its holder renews
it (the heartbeat is younger than the lease), except that a holder on this host
whose process is gone (kill -9, a crash, a reboot's leftovers) is dead at once:
nobody has to wait out its lease. A holder on another host can only be judged by
its heartbeat.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, or_


def holder_name(nonce: str | None = None) -> str:
    """`host:pid:nonce` of this process, readable in the refusal a second runner gets.

    The name must be the process that renews the lease: `holder_is_gone` judges the
    lease by that pid. A fresh nonce makes each claim unique; a run passes its own, so
    a retry in the same process takes over the lease its failed attempt left.
    """
    return f"{socket.gethostname()}:{os.getpid()}:{nonce or uuid.uuid4().hex[:6]}"


def holder_is_gone(holder: str) -> bool:
    """True when `holder` names a process of this host that no longer exists.

    A pid taken again by another process reads as alive: the lease is then waited
    out as for a remote holder, which is slower but never wrong.
    """
    parts = holder.split(":")
    if len(parts) < 3 or not parts[-2].isdigit():
        return False
    host, pid = ":".join(parts[:-2]), int(parts[-2])
    if host != socket.gethostname() or pid == os.getpid():
        return False
    return not process_alive(pid)


def process_alive(pid: int) -> bool:
    """Whether a process of this host with that pid exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """A killed process its parent has not reaped yet: it holds nothing any more."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] == "Z"


def claimable(owner: Any, lapses: Any, claimant: str, now: datetime) -> ColumnElement[bool]:
    """The rule in SQL, for one conditional UPDATE: free, already ours, or lapsed.

    `owner` and `lapses` are the lease's columns; the lease has lapsed once `lapses`
    (a heartbeat plus the lease, or an expiry) is before `now`. A holder that is gone
    from this host is taken over separately (`holder_is_gone`), by an UPDATE that
    names it.
    """
    return or_(owner.is_(None), owner == claimant, lapses.is_(None), lapses < now)


@dataclass(frozen=True)
class LeaseChange:
    """A unit lease taken or given back in the transaction of a status write.

    A unit's start (lease and `running`) and its end (`completed` and the lease given
    back) are then one write each instead of two: the store is written twice per unit,
    not four times, which is most of what a small unit costs beyond Prefect itself.

    Args:
        owner: the holder's name (`holder_name`).
        seconds: how long the taken lease lasts; 0 gives the owner's lease back.
    """

    owner: str
    seconds: float = 0.0

    def apply(self, row: Any, now: datetime) -> bool:
        """Change the lease columns of a row locked for update; False if another holds it.

        The same rule as `claimable`, plus the take-over of a holder gone from this host.
        """
        if self.seconds <= 0:
            if row.lease_owner == self.owner:
                row.lease_owner = row.lease_expires_at = None
            return True
        lapsed = row.lease_expires_at is None or row.lease_expires_at < now
        held = row.lease_owner not in (None, self.owner) and not lapsed
        if held and not holder_is_gone(row.lease_owner):
            return False
        row.lease_owner = self.owner
        row.lease_expires_at = now + timedelta(seconds=self.seconds)
        return True
