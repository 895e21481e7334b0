"""Settings of the side-app, read from the environment (prefix `DATATRACE_API_`)."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiSettings(BaseSettings):
    """Everything the side-app reads from the environment."""

    model_config = SettingsConfigDict(env_prefix="DATATRACE_API_", extra="ignore")

    token: SecretStr | None = Field(
        default=None,
        description=(
            "When set, every route (page, REST, streams, docs) requires it: as "
            "`Authorization: Bearer <token>`, or the cookie set by opening `/?token=<token>`."
        ),
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description=(
            "Origins allowed to call the API from a browser (JSON list). Empty: same origin "
            "only. `*` is refused because the API accepts credentials."
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
