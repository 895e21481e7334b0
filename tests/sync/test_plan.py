"""plan_job: a dry run that writes nothing; clear errors for bad tables and databases."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from rich.console import Console
from sqlalchemy.engine import URL

from datatrace_tasks.exceptions import DatabaseUnreachable, TableNotFound
from datatrace_tasks.sync.plan import plan_job
from tests.sync.helpers import TARGETS, SyncKit, execute


def tables(url: URL) -> list[str]:
    """Table names on `url`."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    names = sa.inspect(engine).get_table_names()
    engine.dispose()
    return names


@pytest.mark.mysql
class TestPlan:
    """The plan lists every unit and changes nothing."""

    @pytest.mark.parametrize("kind", TARGETS)
    def test_plan_writes_nothing_and_lists_units(
        self, kind: str, sakila: URL, sync: SyncKit
    ) -> None:
        """All 16 Sakila tables are planned with DDL; the target stays empty."""
        target = sync.target(kind)
        plan = plan_job(sync.job(sakila, target))
        assert len(plan.units) == 16 and not plan.refused
        assert all(u.action == "create" and u.ddl for u in plan.units)
        assert tables(target) == []
        by_name = {u.table: u for u in plan.units}
        assert by_name["film_actor"].key == ["actor_id", "film_id"]
        if kind == "mysql":
            ddl = str(by_name["film"].ddl)
            assert "FOREIGN KEY" not in ddl and "set('Trailers'" in ddl
        else:
            assert any("SRID dropped" in w for w in by_name["address"].warnings)
            assert any("comma-separated" in w for w in by_name["film"].warnings)
        Console(width=200, record=True).print(plan.render())

    def test_refusals_are_explained(self, edge_source: URL, sync: SyncKit) -> None:
        """An incompatible existing table, and a keyless table in append mode, are refused
        with a reason; a keyless table otherwise is planned with how it is copied."""
        target = sync.target("sqlite")
        execute(target, "CREATE TABLE texts (id INTEGER PRIMARY KEY)")
        plan = plan_job(sync.job(edge_source, target, tables=["nokey", "texts", "empty"]))
        reasons = {u.table: u.refusal for u in plan.units}
        assert reasons["nokey"] is None
        nokey = next(u for u in plan.units if u.table == "nokey")
        assert any("staging table and swapped in" in w for w in nokey.warnings)
        assert any("restarts it from zero" in w for w in nokey.warnings)
        assert "column 'body' is missing" in str(reasons["texts"])
        assert reasons["empty"] is None
        appending = plan_job(sync.job(edge_source, target, tables=["nokey"], write_mode="append"))
        assert "no primary key" in str(appending.units[0].refusal)
        assert tables(target) == ["texts"]

    def test_include_and_exclude_patterns(self, sakila: URL, sync: SyncKit) -> None:
        """include/exclude filter the table list with fnmatch patterns."""
        job = sync.job(sakila, sync.target("sqlite"), include=["film*"], exclude=["*_text"])
        assert [u.table for u in plan_job(job).units] == ["film", "film_actor", "film_category"]


@pytest.mark.mysql
class TestBadInput:
    """Unknown tables and unreachable databases fail clearly, passwords masked."""

    @pytest.mark.parametrize("name", ["nosuch", "film; DROP TABLE film", "a`b", "fi'lm"])
    def test_unknown_table_is_named(self, name: str, sakila: URL, sync: SyncKit) -> None:
        """A table not in the catalog is TableNotFound naming it, however odd its name."""
        with pytest.raises(TableNotFound, match="not in the source schema") as err:
            plan_job(sync.job(sakila, sync.target("sqlite"), tables=[name]))
        assert repr(name) in str(err.value)

    def test_wrong_password_is_masked(self, sakila: URL, sync: SyncKit) -> None:
        """A wrong password gives DatabaseUnreachable with host and database, no password."""
        bad = sakila.set(password="not-the-pw-42")
        with pytest.raises(DatabaseUnreachable) as err:
            plan_job(sync.job(bad, sync.target("sqlite")))
        message = str(err.value)
        assert "not-the-pw-42" not in message and "***" in message
        assert f"database {sakila.database!r} at {sakila.host}" in message
        assert "Access denied" in message

    def test_unreachable_host(self, sakila: URL, sync: SyncKit) -> None:
        """A closed port on the target gives DatabaseUnreachable naming the target."""
        bad = sakila.set(port=1, password="pw-secret")
        with pytest.raises(DatabaseUnreachable, match="cannot connect to the target") as err:
            plan_job(sync.job(sakila, bad))
        assert "pw-secret" not in str(err.value) and err.value.transient
