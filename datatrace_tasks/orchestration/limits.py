"""Per-database limits across jobs: Prefect global concurrency limits, one per database server.

Every unit reads its task's source and writes its target. Before it copies, it takes
one slot of the limit of each of those servers, so all jobs that share a server,
in any process or on any host talking to the same Prefect server, together run at
most that many units against it. The limit is a Prefect global concurrency limit
named `datatrace-db-<server>` (see it, or change it, under Concurrency in the
Prefect UI); when it is missing and a limit is configured it is created.

Without a Prefect server (the temporary one each process starts) a "global" limit
would only be global to that process: the per-flow limit (the job's concurrency)
is then all there is, and one log line says so.
"""

from __future__ import annotations

import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from pydantic import ValidationError
from sqlalchemy.engine import make_url

from datatrace_tasks.exceptions import ConfigError
from datatrace_tasks.heartbeat import renewed
from datatrace_tasks.settings import DataTraceSettings

log = logging.getLogger("datatrace")

LIMIT_PREFIX = "datatrace-db-"
_DEFAULT_PORTS = {"mysql": 3306, "mariadb": 3306, "postgresql": 5432, "mssql": 1433}


def load_settings() -> DataTraceSettings:
    """The limit settings, with every limit checked.

    Raises:
        ConfigError: a limit of 0 or less (it would never let a unit run), or bad JSON.
    """
    try:
        settings = DataTraceSettings()
    except ValidationError as exc:
        raise ConfigError(f"invalid database limit settings: {exc.errors()[0]['msg']}") from exc
    if settings.db_limit is not None:
        check_limit(settings.db_limit, "DATATRACE_DB_LIMIT")
    for key, value in settings.db_limits.items():
        check_limit(value, f"DATATRACE_DB_LIMITS[{key!r}]")
    return settings


def check_limit(limit: int, where: str) -> int:
    """Refuse a limit that could never let a unit run.

    Raises:
        ConfigError: `limit` is 0 or less.
    """
    if limit < 1:
        raise ConfigError(
            f"{where} is {limit}: a database limit must be at least 1 unit at once "
            "(unset it to leave the server unlimited)"
        )
    return limit


def server_key(url: str) -> str | None:
    """The server a URL points at: `backend://host:port`, or `sqlite:///abs/path`.

    Passwords play no part (masked URLs give the same key). None for in-memory SQLite
    or a URL that cannot be parsed.
    """
    if not url:
        return None
    try:
        parsed = make_url(url)
    except Exception:
        return None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            return None
        return f"sqlite:///{os.path.abspath(parsed.database)}"
    port = parsed.port or _DEFAULT_PORTS.get(backend)
    host = (parsed.host or "localhost").lower()
    return f"{backend}://{host}:{port}" if port else f"{backend}://{host}"


def limit_name(key: str) -> str:
    """The Prefect limit name for a server key (letters, digits, `.`, `_`, `-` only)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", key).strip("-")
    return f"{LIMIT_PREFIX}{slug}"[:200]


def has_prefect_server() -> bool:
    """Whether a Prefect API server is configured (not the per-process temporary one)."""
    from prefect.settings import get_current_settings

    return bool(get_current_settings().api.url)


def prepare_limits(urls: Sequence[str], settings: DataTraceSettings | None = None) -> list[str]:
    """The names of the limits a unit of a task with these database URLs must take.

    Creates a configured limit that is missing. Returns [] when there is no Prefect
    server (after one log line saying the per-flow limit is all that applies).

    Raises:
        ConfigError: a configured or existing limit of 0 or less.
    """
    settings = settings if settings is not None else load_settings()
    keys = sorted({k for k in (server_key(u) for u in urls) if k})
    if not keys:
        return []
    if not has_prefect_server():
        if settings.db_limit is None and not settings.db_limits:
            return []  # nothing configured, nothing to say
        log.warning(
            "no Prefect server (PREFECT_API_URL is unset): database limits across jobs are "
            "off, only this job's concurrency limits its units"
        )
        return []
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    names: list[str] = []
    with get_client(sync_client=True) as client:
        for key in keys:
            name = limit_name(key)
            wanted = settings.db_limits.get(key, settings.db_limit)
            try:
                existing: Any = client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                existing = None
            if existing is None and wanted is None:
                continue  # nobody asked to limit this server
            if existing is None:
                assert wanted is not None
                try:
                    client.create_global_concurrency_limit(
                        GlobalConcurrencyLimitCreate(name=name, limit=check_limit(wanted, name))
                    )
                    log.info("created the Prefect limit %s: %d units at once", name, wanted)
                except ObjectAlreadyExists:
                    pass  # another job created it a moment ago
            else:
                if not existing.active:
                    continue
                check_limit(int(existing.limit), f"the Prefect limit {name}")
                if wanted is not None and wanted != existing.limit:
                    log.warning(
                        "Prefect limit %s is %d, not the configured %d: the server's value "
                        "applies (change it there)",
                        name,
                        existing.limit,
                        wanted,
                    )
            names.append(name)
    return names


class _SlotClient:
    """The three calls of a leased slot, straight to Prefect's REST API.

    Prefect's `concurrency()` context manager costs 80 ms uncontended and, against a
    busy SQLite-backed server, often 2 s more: its client retries the server's
    "database is locked" 503 after a 2 s back-off, and emits events on each acquire
    and release. A unit needs none of that: one POST to take, one to give back, and
    a short retry of our own. Measured: see the report of issue 5.
    """

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        import httpx

        self._http = httpx.Client(
            base_url=url.rstrip("/") + "/v2/concurrency_limits", headers=headers, timeout=30.0
        )

    @classmethod
    def shared(cls) -> _SlotClient:
        """One client per Prefect API and process: building one (its TLS context) costs ms."""
        import base64

        from prefect.settings import get_current_settings

        api = get_current_settings().api
        headers = {}
        if api.auth_string is not None:
            token = base64.b64encode(api.auth_string.get_secret_value().encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        elif api.key is not None:
            headers["Authorization"] = f"Bearer {api.key.get_secret_value()}"
        key = (str(api.url), headers.get("Authorization"))
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = cls(str(api.url), headers)
            return client

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        """POST, retrying at once what the server says to retry (503, 429, a lost connection).

        A SQLite-backed Prefect server answers 503 when two writers collide; the
        collision is over within milliseconds, so the retries are short and jittered.
        """
        import httpx

        attempts = 20
        for attempt in range(attempts):
            try:
                response = self._http.post(path, json=body)
            except httpx.TransportError:
                if attempt == attempts - 1:
                    raise
            else:
                if response.status_code not in (429, 502, 503, 504) or attempt == attempts - 1:
                    return response
            time.sleep(random.uniform(0.005, 0.02) * min(attempt + 1, 10))
        raise AssertionError("unreachable")

    def try_acquire(self, names: Sequence[str], lease_seconds: float) -> tuple[str | None, float]:
        """(lease id, 0) on success; (None, seconds to wait) when the limit is full.

        Raises:
            ConfigError: a limit named here does not exist (any more).
        """
        response = self._post(
            "/increment-with-lease",
            {
                "names": list(names),
                "slots": 1,
                "mode": "concurrency",
                "lease_duration": lease_seconds,
            },
        )
        if response.status_code == 423:
            return None, float(response.headers.get("Retry-After", 1.0))
        response.raise_for_status()
        data = response.json()
        if len(data.get("limits") or []) < len(set(names)):
            if data.get("lease_id"):
                self.release(str(data["lease_id"]))
            raise ConfigError(f"a Prefect limit of {', '.join(names)} was deleted while in use")
        return str(data["lease_id"]), 0.0

    def renew(self, lease_id: str, lease_seconds: float) -> bool:
        """Extend a lease; False if the server no longer knows it."""
        response = self._post(f"/leases/{lease_id}/renew", {"lease_duration": lease_seconds})
        return bool(response.status_code < 400)

    def release(self, lease_id: str) -> None:
        """Give the slots back."""
        self._post("/decrement-with-lease", {"lease_id": lease_id})


_clients: dict[tuple[str, str | None], _SlotClient] = {}
_clients_lock = threading.Lock()

LEASE_SECONDS = 300.0
"""A slot whose holder died (kill -9) is freed by Prefect after this long."""

MAX_POLL_SECONDS = 1.0
"""The longest a waiting unit sleeps between two tries (Prefect may suggest up to 30 s)."""


@contextmanager
def database_slots(
    names: Sequence[str],
    *,
    should_stop: Callable[[], bool],
    on_stop: Callable[[], BaseException],
) -> Iterator[float]:
    """Hold one slot of each named limit while the block runs; yields seconds waited.

    All names are taken in one request, so two units never deadlock holding one slot
    each. While the limit is full the unit tries again (after Prefect's Retry-After,
    at most `MAX_POLL_SECONDS`), asking `should_stop` in between, so a waiting unit
    still notices a pause. A background thread renews the slot's lease.

    Raises:
        the exception `on_stop()` returns, when `should_stop()` turns true while waiting.
        ConfigError: a limit was deleted meanwhile.
    """
    if not names:
        yield 0.0
        return
    client = _SlotClient.shared()
    started = time.monotonic()
    while True:
        if should_stop():
            raise on_stop()
        lease_id, retry_after = client.try_acquire(names, LEASE_SECONDS)
        if lease_id is not None:
            break
        time.sleep(min(max(retry_after, 0.05), MAX_POLL_SECONDS))
    waited = time.monotonic() - started

    with renewed(
        lambda: client.renew(lease_id, LEASE_SECONDS),
        lambda: client.release(lease_id),
        every=LEASE_SECONDS / 3,
        name="datatrace-slot-lease",
        what=f"the slot lease of {', '.join(names)}",
    ):
        yield waited
