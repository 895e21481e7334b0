"""Per-database limits across jobs: Prefect global concurrency limits, fallback, refusals."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.settings import PREFECT_API_URL, temporary_settings

from datatrace_tasks.exceptions import ConfigError
from datatrace_tasks.orchestration.limits import (
    limit_name,
    load_settings,
    prepare_limits,
    server_key,
)
from datatrace_tasks.orchestration.manager import TaskManager
from datatrace_tasks.state.units import UnitStatus

pytestmark = pytest.mark.usefixtures("prefect_harness")


class Gauge:
    """Counts units inside their copy at once, and remembers the highest count."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0

    def process(self, _unit: Any, reporter: Any) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        try:
            reporter.set_total(3)
            for i in range(3):
                time.sleep(0.1)
                reporter.report(i + 1, checkpoint={"i": i + 1})
        finally:
            with self.lock:
                self.now -= 1


def _fake_server() -> str:
    """A MariaDB URL on a host name of its own, so each test gets its own limit."""
    return f"mysql+pymysql://app:secret@db-{uuid.uuid4().hex[:8]}.example:3306/shop"


class TestServerKey:
    def test_same_server_same_key_whatever_the_password_or_schema(self) -> None:
        """Two URLs to one server give one key; the password plays no part."""
        a = server_key("mysql+pymysql://app:pw1@DB1:3306/a")
        b = server_key("mysql+pymysql://other:***@db1/b")
        assert a == b == "mysql://db1:3306"
        assert server_key("postgresql+psycopg://u@pg/x") == "postgresql://pg:5432"
        assert server_key("sqlite:///:memory:") is None
        assert limit_name("mysql://db1:3306") == "datatrace-db-mysql-db1-3306"


class TestGlobalLimit:
    def test_two_jobs_sharing_a_database_never_exceed_its_limit(
        self, manager: TaskManager, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Two jobs of concurrency 3 reading one server under a limit of 2: at most 2 at once."""
        monkeypatch.setenv("DATATRACE_DB_LIMIT", "2")
        shared = _fake_server()
        gauge = Gauge()
        tasks = [
            manager.create_task(
                f"job-{n}",
                [f"t{i}" for i in range(4)],
                source=shared,
                target=f"sqlite:///{n}-not-shared.db",
            )
            for n in range(2)
        ]
        errors: list[BaseException] = []

        def run(task_id: str) -> None:
            try:
                manager.execute_auto_mode(task_id, 3, gauge.process)
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(t,)) for t in tasks]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not errors
        assert gauge.peak == 2
        for task_id in tasks:
            assert {u.status for u in manager.store.load_units(task_id)} == {UnitStatus.COMPLETED}
        with get_client(sync_client=True) as client:
            limit = client.read_global_concurrency_limit_by_name(
                limit_name(server_key(shared) or "")
            )
        assert limit.limit == 2 and limit.active_slots == 0

    def test_an_existing_limit_is_used_as_configured_in_prefect(self, manager: TaskManager) -> None:
        """A limit someone created in Prefect applies even with nothing configured here."""
        shared = _fake_server()
        name = limit_name(server_key(shared) or "")
        with get_client(sync_client=True) as client:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
        gauge = Gauge()
        task_id = manager.create_task("one-at-a-time", ["a", "b", "c"], source=shared)
        manager.execute_auto_mode(task_id, 3, gauge.process)
        assert gauge.peak == 1
        assert {u.status for u in manager.store.load_units(task_id)} == {UnitStatus.COMPLETED}

    def test_a_unit_waiting_for_a_slot_is_not_shown_running(self, manager: TaskManager) -> None:
        """Under a limit of 1, while one unit copies the others wait for the slot: the store
        shows exactly one unit running at every moment, and the waiting ones pending."""
        shared = _fake_server()
        name = limit_name(server_key(shared) or "")
        with get_client(sync_client=True) as client:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
        task_id = manager.create_task("waiting", ["a", "b", "c"], source=shared)
        seen: list[dict[str, UnitStatus]] = []

        def process(unit: Any, reporter: Any) -> None:
            reporter.set_total(3)
            for i in range(3):
                time.sleep(0.1)
                seen.append({u.id: u.status for u in manager.store.load_units(task_id)})
                reporter.report(i + 1, checkpoint={"i": i + 1})

        manager.execute_auto_mode(task_id, 3, process)
        assert len(seen) == 9
        for moment in seen:
            running = [u for u, status in moment.items() if status is UnitStatus.RUNNING]
            assert len(running) == 1, moment
            waiting = {
                s for s in moment.values() if s not in (UnitStatus.RUNNING, UnitStatus.COMPLETED)
            }
            assert waiting <= {UnitStatus.PENDING}, moment


class TestRefusals:
    @pytest.mark.parametrize("value", ["0", "-3"])
    def test_limit_below_one_is_refused_before_anything_runs(
        self, value: str, manager: TaskManager, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """DATATRACE_DB_LIMIT of 0 or less: a clear ConfigError, the task left untouched."""
        monkeypatch.setenv("DATATRACE_DB_LIMIT", value)
        task_id = manager.create_task("refused", ["a"], source=_fake_server())
        ran: list[str] = []
        with pytest.raises(ConfigError, match=f"DATATRACE_DB_LIMIT is {value}: .*at least 1"):
            manager.execute_auto_mode(task_id, 1, lambda u, r: ran.append(u.id))
        assert ran == []
        assert manager.store.get_task(task_id).status == "pending"
        assert manager.store.load_units(task_id)[0].status is UnitStatus.PENDING

    def test_per_server_limit_below_one_is_refused(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A zero in DATATRACE_DB_LIMITS names the server it was set for."""
        monkeypatch.setenv("DATATRACE_DB_LIMITS", '{"mysql://db9:3306": 0}')
        with pytest.raises(ConfigError, match="mysql://db9:3306.*at least 1"):
            load_settings()

    def test_existing_prefect_limit_of_zero_is_refused(self, manager: TaskManager) -> None:
        """A Prefect limit of 0 would block every unit forever: refused, naming the limit."""
        shared = _fake_server()
        name = limit_name(server_key(shared) or "")
        with get_client(sync_client=True) as client:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=0))
        task_id = manager.create_task("blocked", ["a"], source=shared)
        with pytest.raises(ConfigError, match=f"{name} is 0"):
            manager.execute_auto_mode(task_id, 1, lambda u, r: None)


class TestWithoutServer:
    def test_falls_back_to_the_flow_limit_with_one_log_line(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """No PREFECT_API_URL: no global limit is taken, and one warning says so."""
        monkeypatch.setenv("DATATRACE_DB_LIMIT", "2")
        with (
            temporary_settings(updates={PREFECT_API_URL: None}),
            caplog.at_level(logging.WARNING, logger="datatrace"),
        ):
            names = prepare_limits([_fake_server(), "sqlite:////tmp/x.db"])
        assert names == []
        lines = [r.getMessage() for r in caplog.records if "database limits" in r.getMessage()]
        assert len(lines) == 1 and "only this job's concurrency" in lines[0]
