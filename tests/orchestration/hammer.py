"""A runner process for the scale-out test: claims units of a shared store and copies them.

Kept free of Prefect and pytest imports so four spawned processes start fast.
"""

from __future__ import annotations

import os
from typing import Any

from datatrace_tasks.exceptions import UnitAlreadyRunning
from datatrace_tasks.orchestration.lease import unit_lease
from datatrace_tasks.state.store import Store
from datatrace_tasks.state.units import UnitStatus

BATCHES = 10
ROWS_PER_BATCH = 10


def hammer(url: str, task_id: str, unit_ids: list[str], barrier: Any, out: Any) -> None:
    """Race the other runners for every unit; copy (write progress for) each one won."""
    store = Store(url)
    won: list[str] = []
    refused = 0
    barrier.wait()
    for unit_id in unit_ids:
        try:
            with unit_lease(store, task_id, unit_id, lease_seconds=30):
                if store.unit_row(task_id, unit_id)["status"] == UnitStatus.COMPLETED.value:
                    continue  # another runner finished it before we got the lease
                won.append(unit_id)
                store.write_unit(task_id, unit_id, status=UnitStatus.RUNNING, event="status")
                for batch in range(1, BATCHES + 1):
                    store.write_unit(
                        task_id,
                        unit_id,
                        processed=batch * ROWS_PER_BATCH,
                        total=BATCHES * ROWS_PER_BATCH,
                        checkpoint={"batch": batch, "pid": os.getpid()},
                        event="progress",
                    )
                store.write_unit(task_id, unit_id, status=UnitStatus.COMPLETED, event="status")
        except UnitAlreadyRunning:
            refused += 1
    store.dispose()
    out.put((os.getpid(), won, refused))
