"""The state store on SQLite, MariaDB and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect
from sqlalchemy.engine import make_url

from datatrace_tasks.exceptions import DatabaseUnreachable, DuplicateUnitName, TaskNotFound
from datatrace_tasks.state.store import Store
from datatrace_tasks.state.units import UnitStatus
from tests.conftest import MYSQL_ENV, server_url


class TestSchema:
    def test_migrations_create_tables(self, store: Store) -> None:
        """First use applies the Alembic migrations: the three tables exist."""
        names = set(inspect(store.engine).get_table_names())
        assert {"sync_tasks", "task_unit_runtimes", "task_unit_events"} <= names

    def test_migrate_twice_is_harmless(self, store_url: str) -> None:
        """Opening the same store again does not fail or duplicate anything."""
        Store(store_url).dispose()
        again = Store(store_url)
        assert again.list_tasks() == []
        again.dispose()


class TestTasks:
    def test_create_and_load(self, store: Store) -> None:
        """A new task's units are pending, in order, with their totals."""
        task_id = store.create_task(name="copy", units=[("b", "B"), ("a", "A")], totals={"a": 10})
        units = store.load_units(task_id)
        assert [(u.id, u.name, u.status) for u in units] == [
            ("b", "B", UnitStatus.PENDING),
            ("a", "A", UnitStatus.PENDING),
        ]
        assert units[1].total_records == 10

    def test_source_password_is_masked(self, store: Store) -> None:
        """A source URL is stored without its password."""
        task_id = store.create_task(
            name="t", units=[("a", "a")], source="mysql+pymysql://app:s3cr3t@db:3306/x"
        )
        task = store.get_task(task_id)
        assert "s3cr3t" not in task.source
        assert task.source == "mysql+pymysql://app:***@db:3306/x"

    def test_duplicate_units_write_nothing(self, store: Store) -> None:
        """Duplicate unit ids are refused before any row is written."""
        with pytest.raises(DuplicateUnitName, match="'a'"):
            store.create_task(name="t", units=[("a", "a"), ("a", "again")])
        assert store.list_tasks() == []

    def test_unknown_task(self, store: Store) -> None:
        """Loading an unknown task raises TaskNotFound naming the id."""
        with pytest.raises(TaskNotFound, match="nope"):
            store.load_units("nope")

    def test_odd_unit_names_round_trip(self, store: Store) -> None:
        """Names with quotes, backticks and unicode are stored as data, not SQL."""
        odd = ["it's", 'say "hi"', "back`tick", "semi;colon -- x", "表 😀"]
        task_id = store.create_task(name="odd", units=[(n, n) for n in odd])
        assert [u.id for u in store.load_units(task_id)] == odd


class TestUnitsAndEvents:
    def test_write_unit_appends_events_in_order(self, store: Store) -> None:
        """Status and progress writes append events whose ids only grow."""
        task_id = store.create_task(name="t", units=[("a", "a")])
        e1 = store.write_unit(task_id, "a", status=UnitStatus.RUNNING, event="status")
        e2 = store.write_unit(task_id, "a", processed=5, total=10, event="progress")
        assert e1 is not None and e2 is not None and e2 > e1
        events = store.events_after(0, task_id=task_id)
        assert [(e.kind, e.status, e.processed_records) for e in events][-2:] == [
            ("status", "running", 0),
            ("progress", "running", 5),
        ]
        assert store.events_after(e1, task_id=task_id)[0].id == e2

    def test_checkpoint_and_percentage(self, store: Store) -> None:
        """A checkpoint is kept as JSON and the percentage column follows the counts."""
        task_id = store.create_task(name="t", units=[("a", "a")])
        store.write_unit(task_id, "a", processed=50, total=200, checkpoint={"last_key": [7]})
        row = store.unit_row(task_id, "a")
        assert row["checkpoint"] == {"last_key": [7]}
        assert row["percentage"] == 25.0

    def test_pause_flag(self, store: Store) -> None:
        """The pause flag is stored per task."""
        task_id = store.create_task(name="t", units=[("a", "a")])
        assert not store.pause_requested(task_id)
        store.set_pause_requested(task_id, True)
        assert store.pause_requested(task_id)


class TestUnreachable:
    @pytest.mark.mysql
    def test_wrong_password_is_masked(self) -> None:
        """A wrong password gives one readable error naming host and database, masked."""
        url = make_url(server_url(MYSQL_ENV)).set(username="nobody", password="Hunter2-secret")
        with pytest.raises(DatabaseUnreachable) as info:
            Store(url.render_as_string(hide_password=False))
        message = str(info.value)
        assert "Hunter2-secret" not in message
        assert "127.0.0.1" in message and "nobody:***@" in message

    def test_unreachable_port(self) -> None:
        """A server that is not there fails fast with the host named."""
        with pytest.raises(DatabaseUnreachable, match="127.0.0.1:1"):
            Store("postgresql+psycopg://u:pw@127.0.0.1:1/db")


class TestMigrations:
    def test_head_revision_is_alembics_head(self) -> None:
        """The revision the store compares against is the newest migration's, so a new
        migration cannot be skipped by the fast path."""
        from alembic.config import Config
        from alembic.script import ScriptDirectory

        from datatrace_tasks.state import engine

        config = Config()
        config.set_main_option("script_location", str(engine._MIGRATIONS))
        assert ScriptDirectory.from_config(config).get_current_head() == engine.HEAD_REVISION

    def test_an_older_schema_is_upgraded(self, tmp_path: Path) -> None:
        """A store at an older revision is brought to the head when it is opened."""
        from sqlalchemy import create_engine, text

        from datatrace_tasks.state import engine

        url = f"sqlite:///{tmp_path / 'old.db'}"
        Store(url).dispose()
        with create_engine(url).begin() as conn:
            conn.execute(text("UPDATE datatrace_alembic_version SET version_num = '0001'"))
            conn.execute(text("ALTER TABLE task_unit_runtimes DROP COLUMN lease_owner"))
            conn.execute(text("ALTER TABLE task_unit_runtimes DROP COLUMN lease_expires_at"))
            conn.execute(text("ALTER TABLE task_unit_runtimes DROP COLUMN figures"))
        engine._migrated.discard(url)
        store = Store(url)
        task_id = store.create_task(name="t", units=[("a", "a")])
        assert store.claim_unit(task_id, "a", "me:1:x", lease_seconds=30)
        store.write_unit(task_id, "a", figures={"rows_read": 1})  # 0003's column is back
        assert store.job_runs("t")[0].rows_read == 1
        store.dispose()
