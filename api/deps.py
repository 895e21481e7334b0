"""Dependencies of the routes: the store, the broadcaster, the runs and the settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from api.runs import BackgroundRuns
from api.settings import ApiSettings
from datatrace_tasks.broadcast import EventBroadcaster
from datatrace_tasks.store import Store


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


StateDep = Annotated[AppState, Depends(get_state)]
StoreDep = Annotated[Store, Depends(get_store)]
BroadcasterDep = Annotated[EventBroadcaster, Depends(get_broadcaster)]
RunsDep = Annotated[BackgroundRuns, Depends(get_runs)]
SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
