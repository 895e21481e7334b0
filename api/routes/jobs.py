"""Jobs: a job's runs (one sync task each), newest first, with what each did."""

from __future__ import annotations

from datetime import UTC
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from api.deps import StoreDep
from api.schemas import JobRunOut

router = APIRouter(prefix="/api/jobs", tags=["jobs"])


@router.get(
    "/{name}/runs",
    response_model=list[JobRunOut],
    summary="A job's runs, newest first (an empty list for a job that never ran)",
)
def job_runs(
    name: Annotated[str, Path(description="The job's name (its `name:` key).")],
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="Runs at most, newest first.")] = 50,
) -> list[dict[str, Any]]:
    """Each run's sync task, mode, rows read, written and deleted, seconds, and how many
    of its units completed and verified."""
    runs = store.job_runs(name, limit=limit)
    return [r.to_dict() | {"created_at": r.created_at.replace(tzinfo=UTC)} for r in runs]
