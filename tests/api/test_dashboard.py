"""The dashboard page in a real headless Chromium (Debian `chromium`, Python `playwright`)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from datatrace_tasks.orchestration.manager import TaskManager
from datatrace_tasks.state.store import Store
from datatrace_tasks.state.units import UnitStatus
from tests.api.helpers import DEADLINE, LiveServer, Serve, wait_until
from tests.live.test_progress import pace_events

playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.browser

TOKEN = "browser-token"
# Kept after the run for people and CI to look at (git ignores the folder).
SCREENSHOT = Path(os.environ.get("DATATRACE_TEST_ARTIFACTS", "test-artifacts")) / "dashboard.png"
TIMEOUT_MS = DEADLINE * 1000


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """One headless Chromium for the module.

    Skipped when the `chromium` package is absent, unless `DATATRACE_REQUIRE_BROWSER=1`
    (CI installs it and must not skip the page test).
    """
    executable = shutil.which("chromium")
    if executable is None:
        if os.environ.get("DATATRACE_REQUIRE_BROWSER") == "1":
            pytest.fail("DATATRACE_REQUIRE_BROWSER=1 but the `chromium` package is not installed")
        pytest.skip("the Debian `chromium` package is not installed")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=executable,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


def _shop(manager: TaskManager) -> str:
    """A running task with a unit in every state: done, running, failed, paused, pending."""
    task_id = manager.create_task(
        "shop → warehouse",
        ["customers", "orders", "order_items", "page views", "regions"],
        totals={
            "customers": 20_000,
            "orders": 60_000,
            "order_items": 200_000,
            "page views": 80_000,
            "regions": 3_000,
        },
        source="mysql+pymysql://reader:hunter2@db.internal/shop",
        target="postgresql+psycopg://writer:hunter2@warehouse/analytics",
    )
    store = manager.store
    store.set_task_status(task_id, "running", "5 units to run")
    for unit in ("customers", "orders", "order_items", "page views"):
        manager.update_unit_status_with_sync(task_id, unit, UnitStatus.RUNNING)
    manager.update_unit_progress_with_sync(task_id, "customers", 20_000, force=True)
    manager.update_unit_status_with_sync(task_id, "customers", UnitStatus.COMPLETED)
    manager.update_unit_progress_with_sync(task_id, "order_items", 35_000, force=True)
    manager.fail_unit_with_sync(
        task_id, "order_items", "IntegrityError: (1062) Duplicate entry '4711-2' for key 'PRIMARY'"
    )
    manager.update_unit_progress_with_sync(task_id, "page views", 32_000, force=True)
    manager.update_unit_status_with_sync(task_id, "page views", UnitStatus.PAUSED)
    for done in (6_000, 12_000, 18_000):
        manager.update_unit_progress_with_sync(task_id, "orders", done, force=True)
    return task_id


def _percentage(page: object, unit: str) -> float:
    row = page.locator(f'#units tr[data-unit-id="{unit}"]')  # type: ignore[attr-defined]
    return float(row.get_attribute("data-percentage"))


def _shows_the_servers_figures(page: object, live: LiveServer, store: Store, task_id: str) -> None:
    """Re-time the orders' events to exactly 1,500 rows/s and check the page shows the
    server's rows/s and ETAs, which it computes from the log, not from what it received.

    orders: 30,000 rows 8 s ago to 42,000 now, 18,000 left: 12 s. The task: only orders
    runs, 234,000 of 363,000 rows left: 156 s.
    """
    pace_events(store, task_id, "orders", 1500.0)
    store.set_task_status(task_id, "running", "5 units to run")  # an event: a new rollup
    page.wait_for_function(  # type: ignore[attr-defined]
        "document.querySelector('#task-rate').textContent === '1,500/s'"
    )
    with live.client(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        units = client.get(f"/api/tasks/{task_id}/units").json()["units"]
    orders = next(u for u in units if u["id"] == "orders")
    assert (orders["rows_per_second"], orders["eta_seconds"]) == (1500.0, 12.0)
    row = page.locator('#units tr[data-unit-id="orders"]')  # type: ignore[attr-defined]
    assert (row.locator(".rate").inner_text(), row.locator(".eta").inner_text()) == (
        "1,500/s",
        "12s",
    )
    assert page.inner_text("#task-eta") == "ETA 2m 36s"  # type: ignore[attr-defined]
    assert "129,000 / 363,000" in page.inner_text("#task-bar-label")  # type: ignore[attr-defined]


class TestDashboard:
    """A person watching a running task in the browser."""

    def test_live_progress_pause_and_completion(
        self, browser: object, sqlite_store: Store, serve: Serve, tmp_path: Path
    ) -> None:
        """The page shows progress changing live, its pause button raises the store's flag,
        and a bar reaching 100 % and the task completing appear without a reload."""
        store = sqlite_store
        manager = TaskManager(store, progress_interval=0)
        task_id = _shop(manager)
        live = serve(store.url, token=TOKEN)
        page = browser.new_page(viewport={"width": 1366, "height": 720})  # type: ignore[attr-defined]
        page.set_default_timeout(TIMEOUT_MS)
        try:
            page.goto(f"{live.base_url}/?token={TOKEN}")  # sets the cookie, drops the token
            assert "token" not in page.url
            page.wait_for_selector('#units tr[data-unit-id="orders"]')
            page.wait_for_selector("#stream-state.live")
            before = _percentage(page, "orders")
            assert before == 30.0
            for done in (24_000, 30_000, 36_000, 42_000):
                manager.update_unit_progress_with_sync(task_id, "orders", done, force=True)
            page.wait_for_function(
                "document.querySelector('#units tr[data-unit-id=\"orders\"]')"
                ".dataset.percentage === '70'"
            )
            assert "42,000 / 60,000" in page.inner_text('#units tr[data-unit-id="orders"]')
            assert "Duplicate entry" in page.inner_text('#units tr[data-unit-id="order_items"]')
            assert "hunter2" not in page.content()
            _shows_the_servers_figures(page, live, store, task_id)
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            shutil.copy(SCREENSHOT, tmp_path / "dashboard.png")

            page.click("#btn-pause")
            wait_until(lambda: store.pause_requested(task_id), "pause flag not raised")
            page.wait_for_selector("#notice:not([hidden])")

            for done in (48_000, 60_000):
                manager.update_unit_progress_with_sync(task_id, "orders", done, force=True)
            manager.update_unit_status_with_sync(task_id, "orders", UnitStatus.COMPLETED)
            store.set_task_status(task_id, "completed", "all units completed")
            page.wait_for_function(
                "document.querySelector('#units tr[data-unit-id=\"orders\"]')"
                ".dataset.percentage === '100'"
            )
            page.wait_for_function(
                "document.querySelector('#task-status').textContent === 'completed'"
            )
            assert _percentage(page, "orders") == 100.0
        finally:
            page.close()

    def test_a_finished_unit_shows_its_run_and_the_page_lists_the_jobs_runs(
        self, browser: object, sqlite_store: Store, serve: Serve
    ) -> None:
        """A unit that ran at exactly 1,500 rows/s and verified shows its elapsed time,
        its average speed, a rows/s line and its verified row count; a long error shows
        its start and opens to the whole text; the job's two runs are listed. A unit that
        completes while the page is open gets its figures without a reload."""
        store = sqlite_store
        manager = TaskManager(store, progress_interval=0)
        older = manager.create_task("nightly", ["orders"])
        store.set_task_status(older, "completed", "1 unit")
        task_id = manager.create_task("nightly", ["orders", "items", "views"])
        store.set_task_status(task_id, "running", "3 units to run")
        manager.update_unit_status_with_sync(task_id, "orders", UnitStatus.RUNNING)
        for done in range(2_000, 60_001, 2_000):
            manager.update_unit_progress_with_sync(task_id, "orders", done, force=True)
        manager.record_verification(
            task_id, "orders", {"ok": True, "source_rows": 60_000, "target_rows": 60_000}
        )
        manager.update_unit_status_with_sync(task_id, "orders", UnitStatus.COMPLETED)
        pace_events(store, task_id, "orders", 1500.0)
        error = "SchemaIncompatible: target table 'items'" + "; cannot take column x" * 8
        manager.update_unit_status_with_sync(task_id, "items", UnitStatus.RUNNING)
        manager.fail_unit_with_sync(task_id, "items", error)
        manager.update_unit_status_with_sync(task_id, "views", UnitStatus.RUNNING)
        live = serve(store.url, token=TOKEN)
        page = browser.new_page(viewport={"width": 1366, "height": 900})  # type: ignore[attr-defined]
        page.set_default_timeout(TIMEOUT_MS)
        try:
            page.goto(f"{live.base_url}/?token={TOKEN}#{task_id}")
            orders = page.locator('#units tr[data-unit-id="orders"]')
            orders.locator("svg.spark polyline").wait_for(state="attached")  # flat: no height
            assert orders.locator(".elapsed").inner_text() == "40.0s"
            assert orders.locator(".rate").inner_text() == "1,500/s"
            assert orders.locator(".verified").inner_text() == "✓ 60,000 rows"
            items = page.locator('#units tr[data-unit-id="items"] .error')
            assert items.locator("summary").inner_text().endswith("…")
            assert not items.locator("pre").is_visible()
            items.locator("summary").click()
            assert items.locator("pre").inner_text() == error
            page.wait_for_selector("#runs:not([hidden])")
            runs = page.locator("#runs-body tr")
            assert runs.count() == 2
            assert runs.nth(0).get_attribute("data-task-id") == task_id

            views = page.locator('#units tr[data-unit-id="views"]')
            assert views.locator(".verified").inner_text() == "–"
            manager.update_unit_progress_with_sync(task_id, "views", 500, force=True)
            manager.record_verification(
                task_id, "views", {"ok": True, "source_rows": 500, "target_rows": 500}
            )
            manager.update_unit_status_with_sync(task_id, "views", UnitStatus.COMPLETED)
            page.wait_for_function(
                "document.querySelector('#units tr[data-unit-id=\"views\"] .verified')"
                ".textContent === '✓ 500 rows'"
            )
            assert views.locator(".elapsed").inner_text() != "–"
        finally:
            page.close()
