"""The app factory of the live-progress side-app.

One app process holds one `Store`, one `EventBroadcaster` (started and stopped with
the app's lifespan) and the runs it started; routes only call into the library.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from pydantic import SecretStr

from api import errors
from api.auth import TokenAuthMiddleware
from api.deps import AppState
from api.routes import events, jobs, page, tasks
from api.routes.page import STATIC
from datatrace_tasks.live.broadcast import EventBroadcaster
from datatrace_tasks.orchestration.background import BackgroundRuns
from datatrace_tasks.settings import ApiSettings, DataTraceSettings
from datatrace_tasks.state.store import Store


def create_app(
    store_url: str | None = None,
    *,
    token: str | None = None,
    cors_origins: Sequence[str] | None = None,
    settings: ApiSettings | None = None,
    progress_interval: float | None = None,
) -> FastAPI:
    """Build the side-app over a state store.

    Args:
        store_url: SQLAlchemy URL of the state store; default `DATATRACE_DATABASE_URL`
            (or the embedded SQLite store).
        token: require this token on every route; default `DATATRACE_API_TOKEN`.
        cors_origins: browser origins allowed to call the API; default
            `DATATRACE_API_CORS_ORIGINS`. `*` is refused.
        settings: the rest of the side-app settings; default from the environment.
        progress_interval: progress write interval of runs started here (resume, retry).

    Returns:
        The FastAPI app; serve it with uvicorn.

    Example:
        >>> app = create_app("sqlite:///state.db", token="s3cret")
        >>> uvicorn.run(app, host="127.0.0.1", port=8000)
    """
    settings = _settings(settings, token=token, cors_origins=cors_origins)
    store = Store(store_url or DataTraceSettings().store_url())
    broadcaster = EventBroadcaster(store, poll_interval=settings.poll_interval)
    runs = BackgroundRuns(
        store, progress_interval=progress_interval, deployment=settings.deployment
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await broadcaster.start()
        try:
            yield
        finally:
            await broadcaster.stop()
            runs.pause_all()
            store.dispose()

    app = FastAPI(
        title="DataTrace live progress",
        summary="Sync tasks, their units and a live event stream, over the DataTrace store.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.datatrace = AppState(store, broadcaster, runs, settings)
    errors.install(app)
    app.include_router(tasks.router)
    app.include_router(jobs.router)
    app.include_router(events.router)
    app.include_router(page.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _add_middleware(app, settings)
    return app


def _settings(
    settings: ApiSettings | None, *, token: str | None, cors_origins: Sequence[str] | None
) -> ApiSettings:
    """The environment's settings, with the arguments given to `create_app` on top."""
    settings = settings or ApiSettings()
    updates: dict[str, object] = {}
    if token is not None:
        updates["token"] = SecretStr(token)
    if cors_origins is not None:
        updates["cors_origins"] = list(cors_origins)
    return ApiSettings.model_validate({**settings.model_dump(), **updates})


def _add_middleware(app: FastAPI, settings: ApiSettings) -> None:
    """The token check, and CORS outside it when origins are allowed."""
    if settings.token is not None:
        app.add_middleware(TokenAuthMiddleware, token=settings.token.get_secret_value())
    if settings.cors_origins:
        # Added last, so it is outermost: preflights are answered before the token check.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Last-Event-ID", "Content-Type"],
        )
