"""The dashboard page: plain HTML and a small script, no build step."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(tags=["dashboard"])


@router.get("/", include_in_schema=False)
def dashboard() -> FileResponse:
    """The live dashboard."""
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})
