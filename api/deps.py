"""Dependencies of the routes: the store, the broadcaster, the runs and the settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Request

from datatrace_tasks.exceptions import TaskNotFound
from datatrace_tasks.live.broadcast import EventBroadcaster
from datatrace_tasks.orchestration.background import BackgroundRuns
from datatrace_tasks.settings import ApiSettings
from datatrace_tasks.state.store import Store


@dataclass(frozen=True)
class AppState:
    """What one app instance shares between requests (kept on `app.state.datatrace`)."""

    store: Store
    broadcaster: EventBroadcaster
    runs: BackgroundRuns
    settings: ApiSettings


def get_state(request: Request) -> AppState:
    """The app's shared state."""
    state: AppState = request.app.state.datatrace
    return state


def get_store(state: StateDep) -> Store:
    """The state store."""
    return state.store


def get_broadcaster(state: StateDep) -> EventBroadcaster:
    """The process's event-log poller."""
    return state.broadcaster


def get_runs(state: StateDep) -> BackgroundRuns:
    """The runs started by this app."""
    return state.runs


def get_settings(state: StateDep) -> ApiSettings:
    """The side-app settings."""
    return state.settings


def get_task_id(task_id: Annotated[str, Path(description="A sync task id.")]) -> str:
    """The task id of the path; one no task can have is a 404 before any query.

    A NUL character cannot be stored in a PostgreSQL text column, whose driver would
    refuse the lookup with an error instead of finding nothing.
    """
    if "\x00" in task_id:
        raise TaskNotFound(task_id)
    return task_id


StateDep = Annotated[AppState, Depends(get_state)]
TaskIdDep = Annotated[str, Depends(get_task_id)]
StoreDep = Annotated[Store, Depends(get_store)]
BroadcasterDep = Annotated[EventBroadcaster, Depends(get_broadcaster)]
RunsDep = Annotated[BackgroundRuns, Depends(get_runs)]
SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
