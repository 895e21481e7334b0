"""A job's history: every sync task that ran under the job's name, with what it did.

A job is a lasting thing with runs: each `datatrace run` of a job file (or each
scheduled run of its deployment) is one sync task under the job's name. A run's
figures are summed from its units: rows read, written and deleted (kept per unit by
`ProgressReporter.set_figures`), how long its units took from the first start to the
last end, and how many of them verified.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from datatrace_tasks.state.engine import StoreConnection
from datatrace_tasks.state.models import SyncTaskRow, TaskUnitRuntimeRow


@dataclass(frozen=True)
class JobRun:
    """One run of a job: its sync task and the sum of its units."""

    task_id: str
    name: str
    status: str
    mode: str
    created_at: datetime
    units: int
    completed: int
    verified: int
    rows_read: int
    rows_written: int
    rows_deleted: int
    seconds: float | None
    message: str
    flow_run_id: str | None = None  # the Prefect flow run that ran it last
    flow_run_url: str | None = None  # where the Prefect UI shows it, when that was known

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (the side-app's `/api/jobs/{name}/runs`)."""
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat()
        return data


def _run(task: SyncTaskRow, units: list[TaskUnitRuntimeRow]) -> JobRun:
    figures = [u.figures or {} for u in units]
    starts = [u.started_at for u in units if u.started_at is not None]
    ends = [u.finished_at for u in units if u.finished_at is not None]
    job = (task.spec or {}).get("job") or {}
    # What the run did, not what the job asked: a differential job's first run is a full copy.
    done = {f["mode"] for f in figures if "mode" in f}
    changed = sorted(done - {"full"})
    flow_runs = (task.spec or {}).get("flow_runs") or [{}]
    mode = (changed[0] if changed else "full") if done else job.get("mode")
    return JobRun(
        task_id=task.id,
        name=task.name,
        status=task.status,
        mode=str(mode or "full"),
        created_at=task.created_at,
        units=len(units),
        completed=sum(u.status == "completed" for u in units),
        verified=sum(bool((u.verification or {}).get("ok")) for u in units),
        rows_read=sum(int(f.get("rows_read", 0)) for f in figures),
        rows_written=sum(int(f.get("rows_written", 0)) for f in figures),
        rows_deleted=sum(int(f.get("rows_deleted", 0)) for f in figures),
        seconds=(max(ends) - min(starts)).total_seconds() if starts and ends else None,
        message=task.message,
        flow_run_id=flow_runs[-1].get("id"),
        flow_run_url=flow_runs[-1].get("url"),
    )


class JobHistory(StoreConnection):
    """The store's reading of a job's runs (mixed into `Store`)."""

    def job_runs(self, name: str, *, limit: int = 50) -> list[JobRun]:
        """The job's runs, newest first (none: no task ran under that name)."""
        with self.session() as s:
            tasks = list(
                s.scalars(
                    select(SyncTaskRow)
                    .where(SyncTaskRow.name == name)
                    .order_by(SyncTaskRow.created_at.desc())
                    .limit(limit)
                )
            )
            ids = [t.id for t in tasks]
            by_task: dict[str, list[TaskUnitRuntimeRow]] = {i: [] for i in ids}
            if ids:
                rows = s.scalars(
                    select(TaskUnitRuntimeRow).where(TaskUnitRuntimeRow.task_id.in_(ids))
                )
                for row in rows:
                    by_task[row.task_id].append(row)
            return [_run(t, by_task[t.id]) for t in tasks]

    def high_water(self, task_id: str, unit_id: str) -> dict[str, Any] | None:
        """The mark the newest verified run of this unit under the task's job name set
        (mode incremental), or None: there is none, or the newest one set no mark."""
        with self.session() as s:
            name = s.scalar(select(SyncTaskRow.name).where(SyncTaskRow.id == task_id))
            if name is None:
                return None
            rows = s.execute(
                select(TaskUnitRuntimeRow.figures)
                .join(SyncTaskRow, SyncTaskRow.id == TaskUnitRuntimeRow.task_id)
                .where(
                    SyncTaskRow.name == name,
                    TaskUnitRuntimeRow.unit_id == unit_id,
                    TaskUnitRuntimeRow.status == "completed",
                    TaskUnitRuntimeRow.finished_at.is_not(None),
                )
                .order_by(TaskUnitRuntimeRow.finished_at.desc())
                .limit(20)
            )
            for (figures,) in rows:
                if figures and figures.get("verified"):
                    mark = figures.get("high_water")
                    return dict(mark) if mark else None
            return None
