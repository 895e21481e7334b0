"""REST routes of the side-app, through httpx against the real app and a real store."""

from __future__ import annotations

import time

import pytest

from datatrace_tasks.orchestration.manager import TaskManager
from datatrace_tasks.state.store import Store
from datatrace_tasks.state.units import UnitStatus
from tests.api.helpers import Serve
from tests.live.test_progress import pace_events


def _running_task(manager: TaskManager) -> str:
    """A task whose units are completed, running (half done), failed and pending."""
    task_id = manager.create_task(
        "shop",
        [("customers", "customers"), ("orders", "orders"), ("items", "items"), ("views", "views")],
        totals={"customers": 100, "orders": 200, "items": 50, "views": 10},
    )
    manager.store.set_task_status(task_id, "running", "4 units to run")
    manager.update_unit_status_with_sync(task_id, "customers", UnitStatus.RUNNING)
    manager.update_unit_progress_with_sync(task_id, "customers", 100, force=True)
    manager.update_unit_status_with_sync(task_id, "customers", UnitStatus.COMPLETED)
    manager.update_unit_status_with_sync(task_id, "orders", UnitStatus.RUNNING)
    for done in (20, 60, 100):
        manager.update_unit_progress_with_sync(task_id, "orders", done, force=True)
    manager.update_unit_status_with_sync(task_id, "items", UnitStatus.RUNNING)
    manager.fail_unit_with_sync(task_id, "items", "IntegrityError: duplicate key 7")
    return task_id


class TestListAndDetail:
    """Reading tasks, their rollup and their units."""

    def test_lists_tasks_newest_first(
        self, serve: Serve, store_url: str, fast_manager: TaskManager
    ) -> None:
        """GET /api/tasks returns every task, the newest first, with masked URLs only."""
        first = fast_manager.create_task("first", ["a"], source="sqlite:///s.db")
        second = fast_manager.create_task("second", ["b"], source="mysql+pymysql://u:hunter2@db/x")
        with serve(store_url).client() as client:
            response = client.get("/api/tasks")
        assert response.status_code == 200
        body = response.json()
        assert [t["id"] for t in body] == [second, first]
        assert "hunter2" not in response.text
        assert body[0]["status"] == "pending"

    def test_detail_has_rollup(
        self, serve: Serve, store_url: str, fast_manager: TaskManager
    ) -> None:
        """GET /api/tasks/{id} counts units by status, rows done of total, speed and ETA."""
        task_id = _running_task(fast_manager)
        with serve(store_url).client() as client:
            body = client.get(f"/api/tasks/{task_id}").json()
        rollup = body["rollup"]
        assert body["status"] == "running"
        assert rollup["units_by_status"] == {
            "pending": 1,
            "running": 1,
            "completed": 1,
            "failed": 1,
            "paused": 0,
        }
        assert rollup["processed_records"] == 200
        assert rollup["total_records"] == 360
        assert rollup["percentage"] == pytest.approx(55.56, abs=0.01)
        assert rollup["rows_per_second"] > 0
        assert rollup["eta_seconds"] is not None  # known: some rows left, speed above 0

    def test_units_in_order_with_state(
        self, serve: Serve, store_url: str, fast_manager: TaskManager
    ) -> None:
        """GET /api/tasks/{id}/units shows each unit's status, progress, speed and error."""
        task_id = _running_task(fast_manager)
        live = serve(store_url)
        with live.client() as client:
            body = client.get(f"/api/tasks/{task_id}/units").json()
        units = {u["id"]: u for u in body["units"]}
        assert [u["id"] for u in body["units"]] == ["customers", "orders", "items", "views"]
        assert units["customers"]["percentage"] == 100.0
        assert units["customers"]["eta_seconds"] == 0.0
        assert units["orders"]["processed_records"] == 100
        assert units["orders"]["percentage"] == 50.0
        assert units["orders"]["rows_per_second"] > 0
        assert units["items"]["status"] == "failed"
        assert units["items"]["error_message"] == "IntegrityError: duplicate key 7"
        assert units["views"]["status"] == "pending"
        assert 0 <= body["last_event_id"] <= live.broadcaster.last_event_id

    def test_rates_are_the_event_logs(
        self, serve: Serve, store_url: str, store: Store, fast_manager: TaskManager
    ) -> None:
        """Units and detail show the speed and ETA the event log gives, rounded alike."""
        task_id = _running_task(fast_manager)
        pace_events(store, task_id, "orders", 5.0)  # 0 rows 20 s ago ... 100 rows now
        with serve(store_url).client() as client:
            units = {u["id"]: u for u in client.get(f"/api/tasks/{task_id}/units").json()["units"]}
            rollup = client.get(f"/api/tasks/{task_id}").json()["rollup"]
        # The 10 s window holds the events at 60 (8 s ago) and 100 rows: 40 rows in 8 s.
        assert (units["orders"]["rows_per_second"], units["orders"]["eta_seconds"]) == (5.0, 20.0)
        assert (rollup["rows_per_second"], rollup["eta_seconds"]) == (5.0, 32.0)
        assert units["views"]["rows_per_second"] == 0.0
        assert units["views"]["eta_seconds"] is None

    def test_openapi_documents_every_route(self, serve: Serve, store_url: str) -> None:
        """The OpenAPI document lists every route, with response models for the REST ones."""
        with serve(store_url).client() as client:
            spec = client.get("/openapi.json").json()
        paths = spec["paths"]
        for path in (
            "/api/tasks",
            "/api/tasks/{task_id}",
            "/api/tasks/{task_id}/units",
            "/api/tasks/{task_id}/pause",
            "/api/tasks/{task_id}/resume",
            "/api/tasks/{task_id}/retry-failed",
            "/api/events",
            "/api/tasks/{task_id}/events",
        ):
            assert path in paths
        detail = paths["/api/tasks/{task_id}"]["get"]["responses"]
        assert detail["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
            "TaskDetailOut"
        )
        assert "404" in detail
        assert "text/event-stream" in paths["/api/events"]["get"]["responses"]["200"]["content"]


class TestBadInput:
    """Unknown ids and malformed input answer with JSON errors, never a 500."""

    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("GET", "/api/tasks/nope"),
            ("GET", "/api/tasks/nope/units"),
            ("GET", "/api/tasks/nope/events"),
            ("POST", "/api/tasks/nope/pause"),
            ("POST", "/api/tasks/nope/resume"),
            ("POST", "/api/tasks/nope/retry-failed"),
        ],
    )
    def test_unknown_task_is_404(
        self, serve: Serve, store_url: str, method: str, path: str
    ) -> None:
        """Every route of a task answers 404 with a JSON message naming the id."""
        with serve(store_url).client() as client:
            response = client.request(method, path)
        assert response.status_code == 404
        assert response.json() == {"detail": "sync task 'nope' not found"}

    def test_bad_limit_is_422_json(self, serve: Serve, store_url: str) -> None:
        """A non-numeric query parameter is a 422 with FastAPI's JSON detail."""
        with serve(store_url).client() as client:
            response = client.get("/api/tasks", params={"limit": "many"})
        assert response.status_code == 422
        assert response.json()["detail"]


class TestPause:
    """POST /api/tasks/{id}/pause raises the store's pause flag."""

    def test_pause_sets_flag(self, serve: Serve, store_url: str, fast_manager: TaskManager) -> None:
        """Pausing a running task answers 202 and the flag a runner reads becomes true."""
        task_id = _running_task(fast_manager)
        with serve(store_url).client() as client:
            response = client.post(f"/api/tasks/{task_id}/pause")
        assert response.status_code == 202
        assert response.json()["action"] == "pause"
        assert fast_manager.store.pause_requested(task_id) is True

    def test_pause_finished_task_is_409(
        self, serve: Serve, store_url: str, fast_manager: TaskManager
    ) -> None:
        """Pausing a completed task answers 409 with the reason and leaves the flag down."""
        task_id = fast_manager.create_task("done", ["a"])
        fast_manager.store.set_task_status(task_id, "completed", "1 of 1 units completed")
        with serve(store_url).client() as client:
            response = client.post(f"/api/tasks/{task_id}/pause")
        assert response.status_code == 409
        assert "completed, not running" in response.json()["detail"]
        assert fast_manager.store.pause_requested(task_id) is False


class TestResumeRefusals:
    """Resume and retry-failed refuse, with 409, what cannot or need not run."""

    def test_running_status_without_a_live_lease_is_not_refused(
        self, serve: Serve, store_url: str, fast_manager: TaskManager
    ) -> None:
        """Liveness is the lease alone: a task that says `running`, with fresh events, but
        whose runner holds no lease (it died and its lease lapsed) may be taken over."""
        task_id = _running_task(fast_manager)
        with serve(store_url).client() as client:
            resume = client.post(f"/api/tasks/{task_id}/resume")
        assert resume.status_code == 422  # past the liveness check: it has no job file to run
        assert "job file" in resume.json()["detail"]

    def test_resume_of_a_task_under_a_live_lease_is_409(
        self, serve: Serve, store_url: str, fast_manager: TaskManager
    ) -> None:
        """A runner holding the task's lease (any host) is named in the refusal."""
        task_id = fast_manager.create_task("held", ["a"])
        fast_manager.store.claim_task(task_id, "worker-7:4242:abc123", lease_seconds=30)
        with serve(store_url).client() as client:
            resume = client.post(f"/api/tasks/{task_id}/resume")
        assert resume.status_code == 409
        assert "worker-7:4242:abc123" in resume.json()["detail"]
        fast_manager.store.release_task(task_id, "worker-7:4242:abc123")
        with serve(store_url).client() as client:
            assert client.post(f"/api/tasks/{task_id}/resume").status_code == 422  # no job file

    def test_nothing_to_resume_or_retry_is_409(
        self, serve: Serve, store_url: str, fast_manager: TaskManager
    ) -> None:
        """A completed task has nothing to resume and no failed unit to retry."""
        task_id = fast_manager.create_task("done", ["a"])
        fast_manager.update_unit_status_with_sync(task_id, "a", UnitStatus.COMPLETED)
        fast_manager.store.set_task_status(task_id, "completed")
        with serve(store_url).client() as client:
            resume = client.post(f"/api/tasks/{task_id}/resume")
            retry = client.post(f"/api/tasks/{task_id}/retry-failed")
        assert resume.status_code == 409
        assert "already completed" in resume.json()["detail"]
        assert retry.status_code == 409
        assert "no failed unit" in retry.json()["detail"]

    def test_job_without_file_is_422(
        self, serve: Serve, store_url: str, store: Store, fast_manager: TaskManager
    ) -> None:
        """A task whose job cannot be rebuilt (no job recorded) answers 422, not 500."""
        task_id = fast_manager.create_task("orphan", ["a"])
        fast_manager.fail_unit_with_sync(task_id, "a", "boom")
        fast_manager.store.set_task_status(task_id, "failed")
        with serve(store_url).client() as client:
            response = client.post(f"/api/tasks/{task_id}/retry-failed")
        assert response.status_code == 422
        assert "cannot resume" in response.json()["detail"]
        assert store.load_units(task_id)[0].status is UnitStatus.FAILED


class TestJobRuns:
    def test_a_jobs_runs_newest_first(self, serve: Serve, store_url: str, store: Store) -> None:
        """GET /api/jobs/{name}/runs lists the job's runs with their figures; a job that
        never ran has none."""
        older = store.create_task(name="nightly", units=[("a", "a")])
        time.sleep(0.01)
        newer = store.create_task(name="nightly", units=[("a", "a")])
        store.write_unit(newer, "a", figures={"rows_read": 5, "rows_written": 5, "rows_deleted": 2})
        with serve(store_url).client() as client:
            body = client.get("/api/jobs/nightly/runs").json()
            none = client.get("/api/jobs/nobody/runs")
        assert [r["task_id"] for r in body] == [newer, older]
        assert (body[0]["rows_written"], body[0]["rows_deleted"]) == (5, 2)
        assert body[0]["created_at"].endswith(("Z", "+00:00"))  # RFC 3339, UTC
        assert none.status_code == 200 and none.json() == []

    def test_a_limit_out_of_range_is_refused_not_a_server_error(
        self, serve: Serve, store_url: str
    ) -> None:
        """A limit past 1,000 (schemathesis sent 10^31, which the store could not bind)
        or below 1 is a 422 naming the parameter."""
        with serve(store_url).client() as client:
            for limit in ("22144931628035306494868355809280", "0", "1001"):
                response = client.get(f"/api/jobs/nightly/runs?limit={limit}")
                assert response.status_code == 422, response.text
                assert "limit" in response.text


class TestUnitRuns:
    def test_a_finished_unit_has_its_elapsed_time_average_speed_chart_and_verification(
        self, serve: Serve, store_url: str, fast_manager: TaskManager
    ) -> None:
        """A unit that ran 0 -> 60,000 rows at exactly 1,500 rows/s and verified: the units
        answer gives 40 s elapsed, 1,500 rows/s on average, a rows/s series of at most 40
        points ending at 40 s, all at 1,500, and what verification found; a unit that never
        ran has none of these."""
        manager = fast_manager
        task_id = manager.create_task("shop", [("orders", "orders"), ("views", "views")])
        manager.update_unit_status_with_sync(task_id, "orders", UnitStatus.RUNNING)
        for done in range(1_000, 60_001, 1_000):
            manager.update_unit_progress_with_sync(task_id, "orders", done, force=True)
        manager.record_verification(
            task_id, "orders", {"ok": True, "source_rows": 60_000, "target_rows": 60_000}
        )
        manager.update_unit_status_with_sync(task_id, "orders", UnitStatus.COMPLETED)
        pace_events(manager.store, task_id, "orders", 1500.0)
        with serve(store_url).client() as client:
            units = {u["id"]: u for u in client.get(f"/api/tasks/{task_id}/units").json()["units"]}
        orders = units["orders"]
        assert (orders["elapsed_seconds"], orders["average_rows_per_second"]) == (40.0, 1500.0)
        history = orders["rate_history"]
        assert 2 <= len(history) <= 40 and history[-1][0] == 40.0
        assert {rate for _, rate in history} == {1500.0}
        assert orders["verification"]["ok"] and orders["verification"]["target_rows"] == 60_000
        views = units["views"]
        assert (views["elapsed_seconds"], views["rate_history"], views["verification"]) == (
            None,
            [],
            None,
        )
