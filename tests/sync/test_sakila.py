"""Sakila end to end: all 16 tables to MariaDB, PostgreSQL and SQLite, verified."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from datatrace_tasks.sync.catalog import read_catalog
from datatrace_tasks.sync.engines import create
from datatrace_tasks.sync.verify import verify_job
from tests.sync.helpers import TARGETS, SyncKit


def _count(url: URL, table: str) -> int:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        stmt = sa.select(sa.func.count()).select_from(sa.table(table))
        return int(conn.execute(stmt).scalar_one())


@pytest.mark.slow
class TestSakila:
    """The whole Sakila schema copies exactly."""

    @pytest.mark.parametrize("kind", TARGETS)
    def test_all_tables_copy_and_verify(
        self, kind: str, sakila: URL, sync: SyncKit, sakila_rows: dict[str, int]
    ) -> None:
        """Every table reaches the README's row count on the target and verifies."""
        target = sync.target(kind)
        job = sync.job(sakila, target, batch_size=1000)
        for table in sakila_rows:
            unit = sync.run(job, table)
            result = unit.extra["verification"]
            assert result["ok"] and result["source_rows"] == sakila_rows[table], table
            assert result["target_rows"] == sakila_rows[table], table
        assert {t: _count(target, t) for t in sakila_rows} == sakila_rows
        again = verify_job(job)
        assert all(r["ok"] for r in again.values()), again

    @pytest.mark.mysql
    def test_mariadb_copy_is_identical_column_by_column(
        self, sakila: URL, sync: SyncKit, sakila_rows: dict[str, int]
    ) -> None:
        """MariaDB to MariaDB keeps types and values, BLOB and GEOMETRY bytes included."""
        target = sync.target("mysql")
        job = sync.job(sakila, target, batch_size=700)
        for table in sakila_rows:
            sync.run(job, table)
        src, dst = create(sakila, role="source"), create(target, role="source")
        catalog = read_catalog(src)
        assert {
            name: [(c.name, c.column_type) for c in info.columns]
            for name, info in read_catalog(dst).items()
        } == {
            name: [(c.name, c.column_type) for c in info.columns] for name, info in catalog.items()
        }
        for name, info in catalog.items():
            sa_table = info.sa_table()
            stmt = sa.select(*sa_table.c).order_by(*(sa_table.c[k] for k in info.key))
            with src.connect() as a, dst.connect() as b:
                assert a.execute(stmt).all() == b.execute(stmt).all(), name
        with dst.connect() as conn:
            picture = conn.execute(sa.text("SELECT LENGTH(picture) FROM staff WHERE staff_id=1"))
            assert picture.scalar_one() == 36365
            wkb = conn.execute(
                sa.text("SELECT ST_AsText(location) FROM address WHERE address_id=1")
            )
            assert str(wkb.scalar_one()).startswith("POINT(")
        src.dispose()
        dst.dispose()
