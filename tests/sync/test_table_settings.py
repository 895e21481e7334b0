"""Per-table settings in the job file (`table_settings`): a row filter, the columns to
copy, the target table's name, and a table's own mode; on every target, through every
write path, checked by reads of both servers that are not the engine's."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from datatrace_tasks.exceptions import (
    ConfigError,
    JobFileInvalid,
    SchemaIncompatible,
)
from datatrace_tasks.orchestration.lifecycle import create_task_from_job
from datatrace_tasks.orchestration.manager import TaskManager
from datatrace_tasks.state.units import TaskUnit
from datatrace_tasks.sync.copy import make_process_fn
from datatrace_tasks.sync.plan import plan_job
from datatrace_tasks.sync.verify import verify_job
from tests.sync.helpers import PATHS, TARGETS, SyncKit, columns, execute, fetch, use_path

# A filter with a `%` (pymysql formats statements with it) and a `:` (SQLAlchemy's
# bind marker) in its literals: both must reach the server as written.
WHERE = "region LIKE 'e%' AND at < '12:00:00'"
WANTED = "SELECT id, note FROM orders WHERE region LIKE 'e%' AND at < '12:00:00' ORDER BY id"
ODD_TARGET = "eu `orders' \"x"


@pytest.fixture
def orders(mysql_schema: Callable[[], URL]) -> URL:
    """`orders` (600 rows over three regions, a column `secret` with its own index, a
    TIME) and `events` (a cursor column), on MariaDB."""
    url = mysql_schema()
    execute(
        url,
        "CREATE TABLE orders (id INT PRIMARY KEY, region VARCHAR(10) NOT NULL,"
        " note VARCHAR(40), secret VARCHAR(20), amount DECIMAL(10,2), at TIME,"
        " KEY by_secret (secret), KEY by_region (region, note))",
        "CREATE TABLE events (id INT PRIMARY KEY, v VARCHAR(20), updated_at DATETIME(6) NOT NULL)",
    )
    regions = ["eu", "us", "east"]
    rows = [
        {
            "id": i,
            "region": regions[i % 3],
            "note": f"note {i}",
            "secret": f"s{i}",
            "amount": f"{i}.{i % 100:02d}",
            "at": f"{i % 24:02d}:30:00",
        }
        for i in range(1, 601)
    ]
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO orders VALUES (:id, :region, :note, :secret, :amount, :at)"),
            rows,
        )
        conn.execute(
            sa.text("INSERT INTO events VALUES (:id, :v, :ts)"),
            [{"id": i, "v": f"e{i}", "ts": f"2024-01-01 00:00:{i:02d}"} for i in range(1, 51)],
        )
    engine.dispose()
    return url


def _tables(url: URL) -> list[str]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        return sorted(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _quoted(kind: str, name: str) -> str:
    if kind == "mysql":
        return "`" + name.replace("`", "``") + "`"
    return '"' + name.replace('"', '""') + '"'


def _settings(**orders: Any) -> dict[str, Any]:
    return {"tables": ["orders"], "table_settings": {"orders": orders}}


@pytest.mark.parametrize(("kind", "path"), PATHS)
def test_where_columns_and_target_name_copy_exactly_the_rows_asked_for(
    kind: str, path: str, orders: URL, sync: SyncKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row filter, a left-out column and another target name: the target table,
    under its new name only, holds exactly the source rows the filter picks (by the
    source server's own `WHERE`), without the left-out column, and verifies clean."""
    use_path(monkeypatch, path)
    target = sync.target(kind)
    options = _settings(where=WHERE, exclude_columns=["secret"], target=ODD_TARGET)
    job = sync.job(orders, target, batch_size=7, ranges=3, **options)
    unit = sync.run(job, "orders")
    if path == "bulk":
        assert unit.extra["copy"]["fallback_batches"] == 0
    wanted = fetch(orders, WANTED)
    assert 40 < len(wanted) < 600, "the filter picks some rows, not all"
    assert _tables(target) == [ODD_TARGET]
    assert columns(target, ODD_TARGET) == ["id", "region", "note", "amount", "at"]
    name = _quoted(kind, ODD_TARGET)
    assert fetch(target, f"SELECT COUNT(*) FROM {name}") == [(len(wanted),)]  # noqa: S608
    copied = fetch(target, f"SELECT id, note FROM {name} ORDER BY id")  # noqa: S608
    assert copied == wanted
    verification = unit.extra["verification"]
    assert verification["ok"] and verification["source_rows"] == len(wanted)


@pytest.mark.parametrize("kind", TARGETS)
def test_verify_fails_on_a_target_row_the_filter_does_not_pick(
    kind: str, orders: URL, sync: SyncKit
) -> None:
    """The target of a filtered table must hold the filtered rows and nothing else: a
    row of the source that the filter leaves out, put on the target by hand, fails
    `verify` naming its key."""
    target = sync.target(kind)
    job = sync.job(orders, target, **_settings(where="region = 'eu'", columns=["note"]))
    sync.run(job, "orders")
    assert columns(target, "orders") == ["id", "note"]  # the key comes with the columns
    assert verify_job(job)["orders"]["ok"]
    execute(target, "INSERT INTO orders (id, note) VALUES (2, 'note 2')")  # region 'us'
    result = verify_job(job)["orders"]
    assert not result["ok"] and "only on the target: key 2" in result["error"]


def test_mysql_target_leaves_out_the_column_and_its_index(orders: URL, sync: SyncKit) -> None:
    """MariaDB to MariaDB, the source's own DDL is used: the left-out column goes, and so
    does every index over it; the other index stays."""
    target = sync.target("mysql")
    job = sync.job(orders, target, **_settings(exclude_columns=["secret"]))
    sync.run(job, "orders")
    ddl = fetch(target, "SHOW CREATE TABLE orders")[0][1]
    assert "secret" not in ddl and "by_secret" not in ddl
    assert "KEY `by_region` (`region`,`note`)" in ddl


def test_a_column_computed_from_a_left_out_one_is_refused(
    mysql_schema: Callable[[], URL], sync: SyncKit
) -> None:
    """A generated column whose expression reads a left-out column cannot be created
    without it: `plan` refuses the table, naming both, and nothing is written."""
    source = mysql_schema()
    execute(source, "CREATE TABLE parts (id INT PRIMARY KEY, qty INT, twice INT AS (qty * 2))")
    target = sync.target("mysql")
    job = sync.job(source, target, **_settings_for("parts", exclude_columns=["qty"]))
    (unit,) = plan_job(job).units
    assert unit.refusal is not None
    assert "'twice' is computed from column `qty`" in unit.refusal
    assert _tables(target) == []


def _settings_for(table: str, **settings: Any) -> dict[str, Any]:
    return {"tables": [table], "table_settings": {table: settings}}


@pytest.mark.parametrize("kind", TARGETS)
def test_a_where_the_source_cannot_run_is_refused_before_any_row(
    kind: str, orders: URL, sync: SyncKit, manager: TaskManager
) -> None:
    """A typo in a row filter: the plan refuses the table with the source server's own
    reason, so starting the job fails with it; no task and no target table is made."""
    target = sync.target(kind)
    job = sync.job(orders, target, **_settings(where="regoin = 'eu'"))
    (unit,) = plan_job(job).units
    assert unit.refusal is not None
    assert "table_settings.orders.where" in unit.refusal and "regoin" in unit.refusal
    with pytest.raises(SchemaIncompatible, match="regoin"):
        create_task_from_job(manager, job, job_path=None)
    assert manager.store.list_tasks() == []
    assert _tables(target) == []


def test_settings_that_do_not_fit_the_source_name_what_is_wrong(orders: URL, sync: SyncKit) -> None:
    """An unknown column, the key left out, a table the job does not copy, two tables
    landing in one: each a ConfigError naming the table and the setting."""
    target = make_url("sqlite://")
    cases = [
        (_settings(columns=["id", "nope"]), "no column 'nope' in source table 'orders'"),
        (_settings(exclude_columns=["id"]), "column 'id' is part of the key (primary key)"),
        (
            {"tables": ["orders"], "table_settings": {"events": {"where": "1"}}},
            "table_settings names 'events', which the job does not copy",
        ),
        (
            {"tables": ["orders", "events"], "table_settings": {"events": {"target": "orders"}}},
            "would both be copied to target table 'orders'",
        ),
    ]
    for options, message in cases:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            plan_job(sync.job(orders, target, **options))


def test_the_job_file_validates_each_table_setting(orders: URL, sync: SyncKit) -> None:
    """Unknown keys, both column lists, a table's incremental mode without a cursor, and
    two settings landing in one target table are refused when the job is read."""
    target = make_url("sqlite://")
    cases = [
        ({"orders": {"wher": "1"}}, "unknown key 'table_settings.orders.wher'"),
        (
            {"orders": {"columns": ["a"], "exclude_columns": ["b"]}},
            "give columns or exclude_columns, not both",
        ),
        ({"orders": {"mode": "incremental"}}, "table_settings.orders: mode: incremental needs"),
        ({"orders": {"write_mode": "append", "mode": "differential"}}, "needs write_mode"),
        ({"a": {"target": "b"}, "b": {}}, "tables 'a' and 'b' both write to target table 'b'"),
    ]
    for settings, message in cases:
        with pytest.raises(JobFileInvalid, match=message):
            sync.job(orders, target, table_settings=settings)


@pytest.mark.parametrize("kind", TARGETS)
def test_one_table_incremental_in_a_full_job(kind: str, orders: URL, sync: SyncKit) -> None:
    """`mode` and `cursor` for one table: in a job that copies in full, `events` takes
    only its rows past the mark on the second run while `orders` is copied whole."""
    target = sync.target(kind)
    settings = {"events": {"mode": "incremental", "cursor": "updated_at", "lookback": 0}}
    job = sync.job(orders, target, tables=["orders", "events"], table_settings=settings)
    process = make_process_fn(job)
    try:
        first = sync.reporter()
        process(TaskUnit(id="events", name="events"), first)
        assert first.figures is not None and first.figures["mode"] == "full"
        execute(orders, "UPDATE events SET v = 'new', updated_at = '2024-02-01' WHERE id = 3")
        second = sync.reporter(high_water=first.figures["high_water"])
        events = TaskUnit(id="events", name="events")
        process(events, second)
        assert events.extra["copy"]["path"] == "incremental"
        assert events.extra["copy"]["rows_read"] == 2  # id 3, and id 50 at the mark
        assert fetch(target, "SELECT v FROM events WHERE id = 3") == [("new",)]
        whole = TaskUnit(id="orders", name="orders")
        process(whole, sync.reporter(high_water=first.figures["high_water"]))
        assert whole.extra["copy"]["path"] != "incremental"
        assert whole.extra["copy"]["rows_read"] == 600
    finally:
        process.close()


@pytest.mark.parametrize("kind", TARGETS)
def test_differential_keeps_the_target_equal_to_the_filtered_source(
    kind: str, orders: URL, sync: SyncKit
) -> None:
    """A differential re-sync of a filtered table: a row updated inside the filter is
    rewritten, a row moved out of it and a row deleted are deleted on the target, a row
    moved into it is copied; the target ends equal to the source's filtered rows."""
    target = sync.target(kind)
    where = "region = 'eu'"
    job = sync.job(orders, target, mode="differential", **_settings(where=where))
    sync.run(job, "orders")
    execute(
        orders,
        "UPDATE orders SET note = 'changed' WHERE id = 3",  # eu: rewritten
        "UPDATE orders SET region = 'us' WHERE id = 6",  # out of the filter: deleted
        "UPDATE orders SET region = 'eu' WHERE id = 1",  # into it: copied
        "DELETE FROM orders WHERE id = 9",
    )
    unit = sync.run(job, "orders")
    assert unit.extra["copy"]["path"] == "differential"
    assert unit.extra["copy"]["rows_deleted"] == 2
    wanted = fetch(orders, f"SELECT id, note FROM orders WHERE {where} ORDER BY id")  # noqa: S608
    assert fetch(target, "SELECT id, note FROM orders ORDER BY id") == wanted


def test_sqlite_to_sqlite_attach_path_takes_the_settings(tmp_path: Path, sync: SyncKit) -> None:
    """The SQLite-to-SQLite path (one INSERT ... SELECT from the attached source file)
    reads only the filtered rows and columns, and writes them under the target name."""
    source = make_url(f"sqlite:///{tmp_path / 'source.db'}")
    execute(source, "CREATE TABLE items (id INTEGER PRIMARY KEY, kind TEXT, secret TEXT)")
    execute(
        source,
        "WITH RECURSIVE n(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM n WHERE v < 500)"
        " INSERT INTO items SELECT v, CASE v % 2 WHEN 0 THEN 'even' ELSE 'odd' END, 'x'"
        " FROM n",
    )
    target = sync.target("sqlite")
    settings = {"where": "kind = 'even'", "columns": ["kind"], "target": "evens"}
    job = sync.job(source, target, batch_size=33, **_settings_for("items", **settings))
    unit = sync.run(job, "items")
    assert unit.extra["copy"]["path"] == "attach"
    assert _tables(target) == ["evens"] and columns(target, "evens") == ["id", "kind"]
    assert fetch(target, "SELECT COUNT(*), MIN(id), MAX(id) FROM evens") == [(250, 2, 500)]
    assert unit.extra["verification"]["ok"]
    execute(target, "DELETE FROM evens WHERE id = 2")
    result = verify_job(job)["items"]
    assert not result["ok"] and "missing on the target: key 2" in result["error"]
