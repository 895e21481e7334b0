"""Zero dates and NUL characters: MariaDB keeps them, PostgreSQL (both) and SQLite (zero
dates) cannot. Such a table is refused before any row is written, naming the column
and key, by `plan` and by the run; MariaDB to MariaDB copies them exactly; the
remedies the message names (leave the column out, or the rows) then copy cleanly."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from datatrace_tasks.exceptions import TableUnsupported
from datatrace_tasks.sync.plan import plan_job
from tests.sync.helpers import TARGETS, SyncKit, fetch

ZERO_DATE = "'0000-00-00'"
CASES = {
    # table: (column type, a value only MariaDB stores, which targets refuse it)
    "zero_date": ("DATE", ZERO_DATE, {"postgres", "sqlite"}),
    "zero_day": ("DATETIME(6)", "'2024-03-00 10:00:00.000001'", {"postgres", "sqlite"}),
    "zero_month": ("TIMESTAMP NULL", "'2024-00-05 00:00:00'", {"postgres", "sqlite"}),
    "nul_text": ("VARCHAR(20)", "CONCAT('a', CHAR(0), 'b')", {"postgres"}),
}


@pytest.fixture
def odd_values(mysql_schema: Callable[[], URL]) -> URL:
    """One table per case: 40 good rows, the odd value at key 17; and a keyless one."""
    url = mysql_schema()
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql("SET SESSION sql_mode = ''")  # a relaxed source lets them in
        for table, (column_type, odd, _) in CASES.items():
            good = "'2024-01-01'" if "DATE" in column_type or "TIME" in column_type else "'ok'"
            conn.exec_driver_sql(f"CREATE TABLE {table} (id INT PRIMARY KEY, v {column_type})")  # noqa: S608
            values = ", ".join(f"({i}, {odd if i == 17 else good})" for i in range(1, 41))
            conn.exec_driver_sql(f"INSERT INTO {table} VALUES {values}")  # noqa: S608
        conn.exec_driver_sql("CREATE TABLE keyless (v DATE)")
        conn.exec_driver_sql(f"INSERT INTO keyless VALUES ('2024-01-01'), ({ZERO_DATE})")  # noqa: S608
    engine.dispose()
    return url


def _tables(url: URL) -> list[str]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        return sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


@pytest.mark.parametrize("kind", TARGETS)
@pytest.mark.parametrize("table", list(CASES))
def test_a_value_the_target_cannot_store_is_refused_before_any_row(
    table: str, kind: str, odd_values: URL, sync: SyncKit
) -> None:
    """Refused on PostgreSQL and SQLite by `plan` and by the run, naming the column and
    the key, with no target table made; copied exactly (and verified) to MariaDB."""
    target = sync.target(kind)
    job = sync.job(odd_values, target, tables=[table], batch_size=5)
    refused = kind in CASES[table][2]
    (planned,) = plan_job(job, probe_values=True).units
    if not refused:
        assert planned.refusal is None
        unit = sync.run(job, table)
        assert unit.extra["verification"]["ok"]
        if kind == "mysql":
            odd = fetch(odd_values, f"SELECT CAST(v AS CHAR) FROM {table} WHERE id = 17")  # noqa: S608
            assert fetch(target, f"SELECT CAST(v AS CHAR) FROM {table} WHERE id = 17") == odd  # noqa: S608
        return
    message = f"table {table!r}: column 'v' holds"
    assert planned.refusal is not None and message in planned.refusal
    assert "at key 17" in planned.refusal
    with pytest.raises(TableUnsupported, match=f"{message}.* at key 17.*nothing was written"):
        sync.run(job, table)
    assert _tables(target) == []


@pytest.mark.parametrize("kind", [p for p in TARGETS if p.id != "mariadb"])
def test_the_remedies_the_refusal_names_copy_the_rest(
    kind: str, odd_values: URL, sync: SyncKit
) -> None:
    """Leaving the column out copies every row; leaving the rows out copies the others."""
    target = sync.target(kind)
    settings = {
        "zero_date": {"exclude_columns": ["v"]},
        "zero_day": {"where": "DAYOFMONTH(v) <> 0"},
    }
    job = sync.job(odd_values, target, tables=list(settings), table_settings=settings)
    assert all(u.refusal is None for u in plan_job(job, probe_values=True).units)
    assert sync.run(job, "zero_date").extra["verification"]["source_rows"] == 40
    assert sync.run(job, "zero_day").extra["verification"]["source_rows"] == 39
    assert fetch(target, "SELECT COUNT(*) FROM zero_day WHERE id = 17") == [(0,)]


@pytest.mark.parametrize("kind", [p for p in TARGETS if p.id != "mariadb"])
def test_a_keyless_table_is_refused_too(kind: str, odd_values: URL, sync: SyncKit) -> None:
    """A table without a key has no key to name; it is refused all the same."""
    target = sync.target(kind)
    job = sync.job(odd_values, target, tables=["keyless"])
    with pytest.raises(TableUnsupported, match="column 'v' holds a zero date, month or day,"):
        sync.run(job, "keyless")
    assert _tables(target) == []
