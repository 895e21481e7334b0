"""Every setting DataTrace reads from the environment, in one place.

`DATATRACE_*` for the library and the command, `DATATRACE_API_*` for the side-app;
each field carries its description, and database URLs are secrets, shown masked.
"""

from __future__ import annotations

from pathlib import Path

import platformdirs
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    """The per-user folder that holds the embedded SQLite store when no URL is set."""
    return Path(platformdirs.user_data_dir("datatrace", appauthor=False))


class DataTraceSettings(BaseSettings):
    """Everything DataTrace reads from the environment."""

    model_config = SettingsConfigDict(env_prefix="DATATRACE_", extra="ignore")

    database_url: SecretStr | None = Field(
        default=None,
        description=(
            "SQLAlchemy URL of the state store (task_unit_runtimes and friends). "
            "Unset: a SQLite file in the per-user data folder."
        ),
    )
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Folder for the embedded SQLite store and demo databases.",
    )
    progress_interval: float = Field(
        default=1.0,
        ge=0.0,
        description="Seconds between two progress writes of one unit to the database.",
    )

    lease_seconds: float = Field(
        default=30.0,
        gt=0.0,
        description=(
            "How long a runner's claim on a task lasts without a heartbeat; after that a "
            "crashed runner's task may be resumed by another."
        ),
    )

    store_retry_seconds: float = Field(
        default=30.0,
        ge=0.0,
        description=(
            "How long unit writes to the state store are retried while it is unreachable "
            "before the unit fails (with its last checkpoint kept)."
        ),
    )

    db_limit: int | None = Field(
        default=None,
        description=(
            "Units at once per database server, across jobs, for servers without their own "
            "entry in db_limits. Unset: only servers whose Prefect limit already exists "
            "are limited."
        ),
    )
    db_limits: dict[str, int] = Field(
        default_factory=dict,
        description=(
            'Per-server limits as JSON, keyed by server, e.g. {"mysql://db1:3306": 4}; '
            "the key is what `server_key` returns for the server's URL."
        ),
    )

    def store_url(self) -> str:
        """The state store URL, defaulting to SQLite in the data folder."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self.data_dir / 'datatrace.db'}"


class ApiSettings(BaseSettings):
    """Everything the side-app reads from the environment."""

    model_config = SettingsConfigDict(env_prefix="DATATRACE_API_", extra="ignore")

    cors_origins: list[str] = Field(
        default_factory=list,
        description=(
            "Origins allowed to call the API from a browser (JSON list). Empty: same origin "
            "only. `*` is refused because the API accepts credentials."
        ),
    )
    token: SecretStr | None = Field(
        default=None,
        description=(
            "When set, every route (page, REST, streams, docs) requires it: as "
            "`Authorization: Bearer <token>`, or the cookie set by opening `/?token=<token>`."
        ),
    )
    poll_interval: float = Field(
        default=0.2, gt=0, description="Seconds between two reads of the event log when idle."
    )
    ping_seconds: float = Field(
        default=15.0, gt=0, description="Seconds between heartbeats on an idle event stream."
    )
    send_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds a stream waits for a client to take one message before dropping it.",
    )
    retry_ms: int = Field(
        default=2000, ge=100, description="Reconnect delay the stream asks browsers to use."
    )

    deployment: str | None = Field(
        default=None,
        description=(
            "`flow-name/deployment-name` of the sync flow (e.g. `datatrace-job/sync-job`): "
            "resume and retry trigger a flow run there instead of running in the side-app."
        ),
    )

    @field_validator("cors_origins")
    @classmethod
    def _no_wildcard(cls, origins: list[str]) -> list[str]:
        if "*" in origins:
            raise ValueError("CORS origin '*' cannot be combined with credentials; list origins")
        return origins
