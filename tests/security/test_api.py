"""Hostile task ids and query values through the REST API and the streams, on every store.

Each is a 404 naming the id (or a 422 for a malformed query value), never a 500; on
MariaDB the general log shows only the expected statements, values as literals. All
200+ ids on SQLite; a 50-odd subset holding every kind of payload on MariaDB and
PostgreSQL (the routes and the store code are the same, only the SQL backend differs).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from typing import Any
from urllib.parse import quote

import pytest
from starlette.routing import Mount

from datatrace_tasks.orchestration.manager import TaskManager
from datatrace_tasks.state.store import Store
from tests.api.helpers import LiveServer, Serve
from tests.conftest import store_backends, store_on
from tests.security.conftest import Captured, GeneralLog, unexpected, without_literals
from tests.security.hostile import hostile_identifiers, searchable

HOSTILE = hostile_identifiers()


def _server_ids() -> list[str]:
    """40-odd ids for the server stores: every 6th generated one, plus each kind of
    payload a server's SQL could trip on, named here so the subset cannot lose it."""
    must = [
        "\x00",
        "evil\x00victim",
        "victim\x00",
        "evil'; SHUTDOWN; --",
        "victim' OR '1'='1 evil",
        'victim" OR "1"="1 evil',
        "victim`; DROP TABLE victim; -- evil",
        "evil`",
        "evil\\",
        "evil/* x */",
        "evil-- ",
        "evil\\'; DROP TABLE victim; --",
        "evil%s",
        "evil%(x)s",
        "evil:name",
        "evil' AND SLEEP(10) AND '1",
        "ｖｉｃｔｉｍ",
        "vіctim",
        "evil🙂",
        "evil\U0010fffd",
        "victim\u202e",
        "evil" + "x" * 10_000,
        "evil" + "é" * 100,
        "",
        "..",
        "../victim",
    ]
    assert set(must) <= set(HOSTILE)
    return list(dict.fromkeys([*must, *HOSTILE[::6]]))


SERVER_IDS = _server_ids()
TASK_ROUTES = [
    ("GET", "/api/tasks/{}"),
    ("GET", "/api/tasks/{}/units"),
    ("GET", "/api/tasks/{}/events"),
    ("POST", "/api/tasks/{}/pause"),
    ("POST", "/api/tasks/{}/resume"),
    ("POST", "/api/tasks/{}/retry-failed"),
]


@pytest.fixture(params=store_backends("mariadb"))
def hostile_store(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[str]:
    """A state store on SQLite, on MariaDB (as the scratch user) or on PostgreSQL."""
    yield from store_on(
        request.param, tmp_path, mariadb=lambda: iter([request.getfixturevalue("mariadb_store")])
    )


class TestHostileTaskIds:
    """Hostile ids in every task route: 404 naming the id, nothing else runs."""

    def test_every_hostile_id_is_not_found(
        self, serve: Serve, hostile_store: str, request: pytest.FixtureRequest
    ) -> None:
        """Hostile ids x 6 routes: 404 naming the id (or no route), never a 500.

        Every one of the 200+ ids on SQLite; on the server stores, a spread of them with
        every kind of payload (NUL, quotes, backticks, unicode, overlong), with MariaDB's
        general log on around the requests.
        """
        ids = HOSTILE if hostile_store.startswith("sqlite") else SERVER_IDS
        store = Store(hostile_store)
        real = TaskManager(store).create_task("real", ["victim"])
        live = serve(hostile_store)
        with ExitStack() as stack:
            log: Captured | None = None
            if "mysql" in hostile_store:
                general_log: GeneralLog = request.getfixturevalue("general_log")
                log = stack.enter_context(general_log.capture())
            answered = sweep(live, ids, real)
        assert answered == len(ids) * len(TASK_ROUTES)
        assert answered >= (200 if ids is HOSTILE else 40) * len(TASK_ROUTES)
        assert [t.id for t in store.list_tasks()] == [real]
        assert store.load_units(real)[0].status.value == "pending"
        store.dispose()
        if log is not None:
            statements = log.statements
            assert statements
            assert [(w, s[:200]) for s in statements if (w := unexpected(s))] == []
            bare = [v for v in ids if searchable(v) and "'" not in v and "\\" not in v]
            # A value reaches SQL only as a literal: inside quotes, never bare (nor as an
            # identifier). Take every literal out of the statement: the value must be gone.
            found = [(v, s) for v in bare for s in statements if v in s]
            assert found, "no hostile id reached the general log: the check would be empty"
            assert [(v, s[:200]) for v, s in found if v in without_literals(s)] == []


def sweep(live: LiveServer, ids: list[str], real: str) -> int:
    """Every id in every task route (and as `limit`); returns how many route calls answered."""
    answered = 0
    with live.client() as client:
        for value in ids:
            for method, route in TASK_ROUTES:
                path = route.format(quote(value, safe=""))
                routing = "/" in value or value in ("", ".", "..")
                with client.stream(method, path) as response:
                    if not routing:  # a dot segment may land on the all-events stream
                        response.read()
                answered += 1
                assert response.status_code < 500, (value, route)
                if routing:
                    continue
                assert response.status_code == 404, (value, route, response.text)
                assert response.json()["detail"] == f"sync task {value!r} not found"
            limit = client.get("/api/tasks", params={"limit": value})
            assert limit.status_code in (200, 422), (value, limit.text)
        assert client.get(f"/api/tasks/{real}").json()["name"] == "real"
    return answered


def every_route(routes: Iterable[Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method, path) of every route, walking included routers; a mount gets one file."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:  # FastAPI >= 0.150 keeps included routers as such
            yield from every_route(included.routes, prefix + route.include_context.prefix)
            continue
        path = getattr(route, "path", None)
        if path is None:
            continue
        if isinstance(route, Mount):
            yield "GET", f"{prefix}{path}/app.js"
            continue
        for method in sorted((getattr(route, "methods", None) or {"GET"}) - {"HEAD"}):
            yield method, prefix + path


class TestToken:
    """With a token configured, every route (stream, page, docs) refuses a bad one."""

    def test_every_route_refuses_missing_or_wrong_token(
        self, sqlite_store: Store, serve: Serve
    ) -> None:
        """Every route of app.routes, each method: 401 without a token and with wrong ones."""
        task_id = TaskManager(sqlite_store).create_task("t", ["a"])
        live = serve(sqlite_store.url, token="right-token-Zq9")
        requests = [
            (method, path.replace("{task_id}", task_id))
            for method, path in every_route(live.app.routes)
        ]
        paths = {p for _, p in requests}
        assert {
            "/",
            "/docs",
            "/openapi.json",
            "/api/events",
            f"/api/tasks/{task_id}/events",
        } <= paths
        wrong_tokens = [
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": "Bearer"},
            {"Authorization": "Bearer right-token-Zq"},
            {"Authorization": "Bearer right-token-Zq9x"},
            {"Authorization": "right-token-Zq9"},
            {"Authorization": "Basic right-token-Zq9"},
            {"Cookie": "datatrace_session=right-token-Zq9"},
            {"Cookie": "datatrace_session="},
        ]
        with live.client() as client:
            for method, path in requests:
                for headers in wrong_tokens:
                    with client.stream(method, path, headers=headers) as response:
                        response.read()
                    assert response.status_code == 401, (method, path, headers)
                    assert "authentication required" in response.json()["detail"]
                query = client.request(method, path, params={"token": "wrong"})
                assert query.status_code == 401, (method, path)
            with client.stream(
                "GET", "/api/events", headers={"Authorization": "Bearer right-token-Zq9"}
            ) as ok:
                assert ok.status_code == 200
        assert len(requests) >= 12
