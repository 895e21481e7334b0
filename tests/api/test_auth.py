"""Access control and CORS: with a token set, nothing answers without it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from datatrace_tasks.orchestration.manager import TaskManager
from datatrace_tasks.settings import ApiSettings
from tests.api.helpers import LiveServer, Serve, sse_messages

TOKEN = "s3cret-token"


def _every_request(live: LiveServer, task_id: str) -> list[tuple[str, str]]:
    """(method, path) of every documented route, plus the page, its assets and the docs."""
    requests = [("GET", "/"), ("GET", "/static/app.js"), ("GET", "/static/style.css")]
    requests += [("GET", "/docs"), ("GET", "/openapi.json"), ("GET", "/redoc")]
    for path, operations in live.app.openapi()["paths"].items():
        for method in sorted(operations):
            requests.append((method.upper(), path.replace("{task_id}", task_id)))
    return requests


class TestToken:
    """DATATRACE_API_TOKEN (or `token=`) guards every route, the stream and the page."""

    def test_no_route_answers_without_token(
        self, serve: Serve, store_url: str, fast_manager: TaskManager
    ) -> None:
        """Every route answers 401 without credentials and with a wrong token."""
        task_id = fast_manager.create_task("t", ["a"])
        live = serve(store_url, token=TOKEN)
        requests = _every_request(live, task_id)
        assert len(requests) >= 14
        with live.client() as client:
            for method, path in requests:
                bare = client.request(method, path)
                wrong = client.request(method, path, headers={"Authorization": "Bearer nope"})
                assert (path, bare.status_code) == (path, 401)
                assert (path, wrong.status_code) == (path, 401)
                assert "authentication required" in bare.json()["detail"]
            assert client.get("/", params={"token": "nope"}).status_code == 401

    def test_bearer_token_opens_every_route(
        self, serve: Serve, store_url: str, fast_manager: TaskManager
    ) -> None:
        """With `Authorization: Bearer`, no route answers 401."""
        task_id = fast_manager.create_task("t", ["a"])
        live = serve(store_url, token=TOKEN)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        with live.client(headers=auth) as client:
            for method, path in _every_request(live, task_id):
                if path.endswith("/events"):
                    with client.stream(method, path) as response:
                        assert response.status_code == 200
                    continue
                assert client.request(method, path).status_code != 401, path

    def test_token_in_page_address_sets_cookie_for_stream(
        self, serve: Serve, store_url: str, fast_manager: TaskManager
    ) -> None:
        """Opening `/?token=` sets an HttpOnly cookie (not the token) that opens the stream."""
        fast_manager.create_task("t", ["a"])
        live = serve(store_url, token=TOKEN)
        with live.client() as client:
            response = client.get("/", params={"token": TOKEN})
            assert response.status_code == 303
            assert response.headers["location"] == "/"
            cookie = response.headers["set-cookie"]
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
            assert TOKEN not in cookie
            assert client.get("/").status_code == 200  # the client kept the cookie
            assert client.get("/api/tasks").status_code == 200
            with client.stream("GET", "/api/events") as stream:
                assert stream.status_code == 200
                assert next(sse_messages(stream.iter_lines())).event == "heartbeat"

    def test_token_from_environment(
        self, serve: Serve, store_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """DATATRACE_API_TOKEN in the environment turns the check on."""
        monkeypatch.setenv("DATATRACE_API_TOKEN", TOKEN)
        live = serve(store_url)
        with live.client() as client:
            assert client.get("/api/tasks").status_code == 401
            ok = client.get("/api/tasks", headers={"Authorization": f"Bearer {TOKEN}"})
            assert ok.status_code == 200


class TestCors:
    """CORS is an explicit allow-list, never `*` with credentials."""

    def test_only_listed_origin_is_allowed(self, serve: Serve, store_url: str) -> None:
        """A listed origin gets CORS headers with credentials; another origin gets none."""
        live = serve(store_url, token=TOKEN, cors_origins=["http://dash.example"])
        preflight = {"Access-Control-Request-Method": "GET"}
        with live.client() as client:
            good = client.options(
                "/api/tasks", headers={"Origin": "http://dash.example", **preflight}
            )
            bad = client.options(
                "/api/tasks", headers={"Origin": "http://evil.example", **preflight}
            )
        assert good.status_code == 200
        assert good.headers["access-control-allow-origin"] == "http://dash.example"
        assert good.headers["access-control-allow-credentials"] == "true"
        assert "access-control-allow-origin" not in bad.headers

    def test_wildcard_origin_is_refused(self) -> None:
        """`*` in the allow-list is a settings error, since the API takes credentials."""
        with pytest.raises(ValidationError, match="cannot be combined with credentials"):
            ApiSettings(cors_origins=["*"])
