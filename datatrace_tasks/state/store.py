"""The state store: `sync_tasks`, `task_unit_runtimes` and `task_unit_events` over SQLAlchemy.

Every write is one short transaction, so many unit threads (or processes, or hosts)
can share one store; each status change and each progress write appends an event,
whose growing id lets the SSE side-app replay what a client missed. The tables are
written by one module each (`task_rows`, `unit_rows`); this one joins them and
reads the event log.
"""

from __future__ import annotations

from sqlalchemy import select

from datatrace_tasks.state.engine import make_engine, unreachable
from datatrace_tasks.state.history import JobHistory, JobRun
from datatrace_tasks.state.models import TaskUnitEventRow
from datatrace_tasks.state.records import SyncTask, UnitEvent, event_record
from datatrace_tasks.state.task_rows import TaskRows
from datatrace_tasks.state.unit_rows import UnitRows

__all__ = ["JobRun", "Store", "SyncTask", "UnitEvent", "make_engine", "unreachable"]


class Store(TaskRows, UnitRows, JobHistory):
    """Reads and writes sync tasks, units and events; migrates its schema on first use.

    Args:
        url: SQLAlchemy URL. SQLite, MySQL/MariaDB (`mysql+pymysql://`) and PostgreSQL
            (`postgresql+psycopg://`) are supported.
    """

    def __repr__(self) -> str:
        return f"Store({self.masked_url!r})"

    def events_after(
        self, last_id: int, *, task_id: str | None = None, limit: int = 1000
    ) -> list[UnitEvent]:
        """Events with an id above `last_id`, oldest first."""
        with self.session() as s:
            q = select(TaskUnitEventRow).where(TaskUnitEventRow.id > last_id)
            if task_id is not None:
                q = q.where(TaskUnitEventRow.task_id == task_id)
            rows = s.scalars(q.order_by(TaskUnitEventRow.id).limit(limit))
            return [event_record(r) for r in rows]
