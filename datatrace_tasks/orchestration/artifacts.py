"""The task's Prefect artifacts: a progress bar while it runs, a table of units after.

Both are read from the store, not from memory: units running on Dask workers
report there. Artifact calls are synchronous HTTP requests, so the progress
artifact is updated on the store's throttle, never per batch.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect.artifacts import (
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from datatrace_tasks.heartbeat import Heartbeat
from datatrace_tasks.state.cache import UnitCache
from datatrace_tasks.state.records import elapsed_seconds
from datatrace_tasks.state.units import percentage

log = logging.getLogger("datatrace")


def artifact_key(name: str, task_id: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "task"
    return f"datatrace-{slug}-{task_id[:8]}"


def task_percentage(manager: UnitCache, task_id: str) -> float:
    # From the store, not memory: units running on Dask workers report there.
    done, total, all_completed = manager.store.rows_done(task_id)
    if total == 0:
        return 100.0 if all_completed else 0.0
    return round(percentage(done, total), 2)


@contextmanager
def progress_artifact(manager: UnitCache, task_id: str, name: str) -> Iterator[None]:
    """A Prefect progress artifact for the task, updated on the store's throttle."""
    try:
        artifact_id: Any = create_progress_artifact(
            task_percentage(manager, task_id),
            key=artifact_key(name, task_id),
            description=f"rows copied of sync task {name} ({task_id})",
        )
    except Exception:
        log.exception("could not create the progress artifact; the run goes on without it")
        yield
        return
    last = [-1.0]

    def mirror() -> None:
        now = task_percentage(manager, task_id)
        if now != last[0]:
            update_progress_artifact(artifact_id, now)
            last[0] = now

    # A failed update is logged and tried at the next interval; one last one at the end.
    interval = max(manager.progress_interval, 0.2)
    with Heartbeat(interval, mirror, name="datatrace-artifact", final_beat=True):
        yield


def summary_artifact(manager: UnitCache, task_id: str, name: str) -> None:
    """A table artifact: each unit's status, rows, attempts, verification and error."""
    rows = []
    for unit, row in manager.store.load_units_and_rows(task_id):
        seconds = elapsed_seconds(row)
        verification = row["verification"] or {}
        rows.append(
            {
                "unit": unit.name,
                "status": unit.status.value,
                "rows": unit.processed_records,
                "total": unit.total_records,
                "seconds": None if seconds is None else round(seconds, 2),
                "attempts": unit.attempts,
                "verified": verification.get("ok", "") if verification else "",
                "error": unit.error_message,
            }
        )
    try:
        create_table_artifact(
            rows,
            key=artifact_key(name, task_id) + "-units",
            description=f"units of sync task {name} ({task_id})",
        )
    except Exception:
        log.exception("could not create the summary artifact")
