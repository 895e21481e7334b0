"""Settings read from the environment (prefix `DATATRACE_`)."""

from __future__ import annotations

from pathlib import Path

import platformdirs
from pydantic import Field, SecretStr
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

    def store_url(self) -> str:
        """The state store URL, defaulting to SQLite in the data folder."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self.data_dir / 'datatrace.db'}"
