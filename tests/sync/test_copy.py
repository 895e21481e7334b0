"""The copy loop: resume, write modes, awkward tables and values, refusals."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from datatrace_tasks.exceptions import (
    SchemaIncompatible,
    TableUnsupported,
    UnitPaused,
    VerificationFailed,
)
from datatrace_tasks.state.units import TaskUnit
from datatrace_tasks.sync.copy import make_process_fn
from datatrace_tasks.sync.plan import plan_job
from datatrace_tasks.sync.verify import verify_job
from tests.sync.helpers import TARGETS, SyncKit, execute, fetch

ODD_TABLE = "we`ird-name x"


def rows(url: URL, table: str, order: str) -> list[tuple[Any, ...]]:
    """All rows of `table`, ordered by `order`, through a throwaway engine."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    t = sa.Table(table, sa.MetaData(), autoload_with=engine)
    with engine.connect() as conn:
        found = conn.execute(sa.select(t).order_by(t.c[order])).all()
    engine.dispose()
    return [tuple(r) for r in found]


@pytest.mark.mysql
class TestResume:
    """An interrupted unit resumes after its last committed batch."""

    @pytest.mark.parametrize("lose", [False, True], ids=["clean-pause", "crash-before-save"])
    def test_resume_reads_only_the_rest(self, lose: bool, edge_source: URL, sync: SyncKit) -> None:
        """After a stop at batch 4 of 10, the resumed run reads 600 rows (+100 on a crash)."""
        target = sync.target("mysql")
        job = sync.job(edge_source, target, batch_size=100)
        first = sync.reporter(stop_after=4, lose_last_checkpoint=lose)
        with pytest.raises(UnitPaused):
            sync.run(job, "big", first)
        assert first.checkpoint["rows"] == (300 if lose else 400)
        second = sync.reporter(first.checkpoint)
        unit = sync.run(job, "big", second)
        assert unit.extra["copy"]["rows_read"] == (700 if lose else 600)
        assert second.reports[-1][0] == 1000
        assert unit.extra["verification"]["target_rows"] == 1000
        assert rows(target, "big", "id") == rows(edge_source, "big", "id")

    def test_composite_datetime_decimal_key_resumes_exactly(
        self, edge_source: URL, sync: SyncKit
    ) -> None:
        """A (DATETIME(6), DECIMAL) key survives the JSON checkpoint and resumes exactly."""
        target = sync.target("sqlite")
        job = sync.job(edge_source, target, batch_size=7)
        first = sync.reporter(stop_after=3)
        with pytest.raises(UnitPaused):
            sync.run(job, "dated", first)
        saved = json.loads(json.dumps(first.checkpoint))
        unit = sync.run(job, "dated", sync.reporter(saved))
        assert unit.extra["copy"]["rows_read"] == 60 - 21
        assert unit.extra["verification"]["target_rows"] == 60


@pytest.mark.mysql
class TestAwkwardTables:
    """Composite keys, NULLs, unicode, empty tables and odd names copy to every target."""

    @pytest.mark.parametrize("kind", TARGETS)
    @pytest.mark.parametrize("table", ["pairs", "nulls", "texts", "empty", ODD_TABLE, "dated"])
    def test_table_copies_and_verifies(
        self, kind: str, table: str, edge_source: URL, sync: SyncKit
    ) -> None:
        """The table copies in small batches and its checksum matches on the target."""
        job = sync.job(edge_source, sync.target(kind), batch_size=2)
        unit = sync.run(job, table)
        result = unit.extra["verification"]
        expected = {"pairs": 25, "nulls": 2, "texts": 5, "empty": 0, ODD_TABLE: 2, "dated": 60}
        assert result["ok"] and result["target_rows"] == expected[table]

    @pytest.mark.parametrize("kind", TARGETS)
    def test_unicode_text_is_unchanged(self, kind: str, edge_source: URL, sync: SyncKit) -> None:
        """Chinese and emoji text reads back the same on the target."""
        target = sync.target(kind)
        sync.run(sync.job(edge_source, target), "texts")
        assert rows(target, "texts", "id") == rows(edge_source, "texts", "id")

    def test_table_without_key_in_append_mode_is_refused(
        self, edge_source: URL, sync: SyncKit
    ) -> None:
        """Append cannot be restarted safely without a key: refused clearly, nothing written."""
        target = sync.target("sqlite")
        with pytest.raises(TableUnsupported, match="'nokey' has no primary key.*append"):
            sync.run(sync.job(edge_source, target, write_mode="append"), "nokey")
        assert not sa.inspect(sa.create_engine(target)).has_table("nokey")


@pytest.mark.mysql
class TestWriteModes:
    """upsert, append and truncate do what they say."""

    def test_upsert_overwrites_changed_rows_and_keeps_others(
        self, edge_source: URL, sync: SyncKit
    ) -> None:
        """A second upsert run fixes a changed target row; target-only rows stay."""
        target = sync.target("mysql")
        job = sync.job(edge_source, target, write_mode="upsert")
        sync.run(job, "texts")
        execute(target, "UPDATE texts SET body = 'changed' WHERE id = 1")
        execute(target, "INSERT INTO texts VALUES (99, 'extra')")
        with pytest.raises(VerificationFailed, match="row counts differ"):
            sync.run(job, "texts")
        assert rows(target, "texts", "id")[:5] == rows(edge_source, "texts", "id")
        assert rows(target, "texts", "id")[5] == (99, "extra")

    def test_truncate_empties_on_first_start_only(self, edge_source: URL, sync: SyncKit) -> None:
        """Truncate removes target-only rows at the first start; a resume does not empty
        the table again, and repairs what its verification then finds."""
        target = sync.target("mysql")
        job = sync.job(edge_source, target, write_mode="truncate", batch_size=100)
        sync.run(job, "big")
        execute(target, "INSERT INTO big (id, v) VALUES (5000, 'stale')")
        first = sync.reporter(stop_after=2)
        with pytest.raises(UnitPaused):
            sync.run(job, "big", first)
        assert [r[0] for r in rows(target, "big", "id")] == list(range(1, 201))
        execute(target, "INSERT INTO big (id, v) VALUES (6000, 'added during pause')")
        # The resume does not empty the table again; its verification finds the row added
        # meanwhile, and the resume's repair deletes it.
        unit = sync.run(job, "big", sync.reporter(first.checkpoint))
        assert unit.extra["copy"]["repaired_rows"] == 1
        assert rows(target, "big", "id") == rows(edge_source, "big", "id")

    def test_append_inserts_and_keeps_target_rows(self, edge_source: URL, sync: SyncKit) -> None:
        """Append adds rows beside the target's own; a crash-resume does not double any."""
        target = sync.target("sqlite")
        job = sync.job(edge_source, target, write_mode="append", batch_size=10)
        sync.run(sync.job(edge_source, target, write_mode="append"), "empty")
        execute(target, "DELETE FROM empty")
        first = sync.reporter(stop_after=2, lose_last_checkpoint=True)
        with pytest.raises(UnitPaused):
            sync.run(job, "pairs", first)
        execute(target, "INSERT INTO pairs VALUES (100, 'own', 1)")
        unit = sync.run(job, "pairs", sync.reporter(first.checkpoint))
        assert unit.extra["verification"]["target_rows"] == 26
        assert len(rows(target, "pairs", "a")) == 26

    def test_plain_append_refuses_duplicate_keys(self, edge_source: URL, sync: SyncKit) -> None:
        """A second append of the same rows fails on the key instead of doubling them."""
        target = sync.target("sqlite")
        job = sync.job(edge_source, target, write_mode="append")
        sync.run(job, "pairs")
        with pytest.raises(sa.exc.IntegrityError):
            sync.run(job, "pairs")
        assert len(rows(target, "pairs", "a")) == 25


@pytest.mark.mysql
class TestIncompatibleTarget:
    """An existing target table that cannot take the rows is refused before writing."""

    @pytest.mark.parametrize("kind", TARGETS)
    def test_missing_column_and_narrow_type_are_named(
        self, kind: str, edge_source: URL, sync: SyncKit
    ) -> None:
        """A target `pairs` lacking `v` and with a too-short `b` is refused, left empty."""
        target = sync.target(kind)
        execute(
            target, "CREATE TABLE pairs (a INT NOT NULL, b VARCHAR(3) NOT NULL, PRIMARY KEY (a, b))"
        )
        with pytest.raises(SchemaIncompatible) as err:
            sync.run(sync.job(edge_source, target), "pairs")
        assert "column 'v' is missing" in str(err.value)
        if kind != "sqlite":  # SQLite ignores VARCHAR lengths, so does the check
            assert "column 'b' is" in str(err.value)
        assert rows(target, "pairs", "a") == []

    def test_a_sqlite_numeric_column_for_a_decimal_is_refused_with_the_reason(
        self, edge_source: URL, sync: SyncKit
    ) -> None:
        """A SQLite `nulls` whose DECIMAL column is NUMERIC (binary-float storage) is
        refused saying why and what the column must be; the table stays empty."""
        target = sync.target("sqlite")
        execute(target, "CREATE TABLE nulls (id INTEGER PRIMARY KEY, d NUMERIC(10, 3))")
        with pytest.raises(SchemaIncompatible) as err:
            sync.run(sync.job(edge_source, target), "nulls")
        assert "column 'd' is NUMERIC(10, 3), source is decimal(10,3)" in str(err.value)
        assert "rounds it" in str(err.value) and "must be TEXT" in str(err.value)
        assert rows(target, "nulls", "id") == []


@pytest.mark.mysql
class TestProcessFn:
    """make_process_fn runs units the way a TaskManager does."""

    def test_reports_total_progress_and_checkpoint(self, edge_source: URL, sync: SyncKit) -> None:
        """set_total comes first, each report is absolute, the last checkpoint is the last key."""
        job = sync.job(edge_source, sync.target("sqlite"), batch_size=400)
        process = make_process_fn(job)
        rep = sync.reporter()
        unit = TaskUnit(id="big", name="big")
        process(unit, rep)
        assert rep.total == 1000
        assert [p for p, _ in rep.reports] == [400, 800, 1000]
        assert rep.checkpoint == {"last_key": [1000], "rows": 1000}

    def test_throttle_caps_rows_per_second(self, edge_source: URL, sync: SyncKit) -> None:
        """At 2,000 rows/s a 1,000-row table takes at least half a second."""
        job = sync.job(
            edge_source, sync.target("sqlite"), batch_size=100, throttle_rows_per_second=2000
        )
        started = time.monotonic()
        sync.run(job, "big")
        assert time.monotonic() - started >= 0.5


class TestSqliteSource:
    """A SQLite source (as `datatrace demo` uses) copies and verifies too."""

    @pytest.mark.parametrize(
        "kind",
        [
            "sqlite",
            pytest.param("postgres", marks=pytest.mark.postgres),
            pytest.param("mysql", marks=pytest.mark.mysql),
        ],
    )
    def test_sqlite_tables_copy_and_verify(self, kind: str, tmp_path: Path, sync: SyncKit) -> None:
        """Dates, decimals, text and a composite key copy from SQLite and verify."""
        source = sa.engine.make_url(f"sqlite:///{tmp_path / 'source.db'}")
        md = sa.MetaData()
        lines = sa.Table(
            "order_lines",
            md,
            sa.Column("order_id", sa.Integer, primary_key=True),
            sa.Column("line_no", sa.Integer, primary_key=True),
            sa.Column("sku", sa.String(16)),
            sa.Column("price", sa.Numeric(10, 2)),
            sa.Column("placed_at", sa.DateTime),
            sa.Column("day", sa.Date),
            sa.Column("note", sa.Text, nullable=True),
        )
        engine = sa.create_engine(source)
        md.create_all(engine)
        with engine.begin() as conn:
            conn.execute(
                lines.insert(),
                [
                    {
                        "order_id": o,
                        "line_no": n,
                        "sku": f"SKU-{o}-{n}",
                        "price": f"{o}.{n:02d}",
                        "placed_at": dt.datetime(2024, 1, 1, 12, o % 60, n),
                        "day": dt.date(2024, 1, 1 + n),
                        "note": None if n % 2 else "取消 😀",
                    }
                    for o in range(30)
                    for n in range(3)
                ],
            )
        engine.dispose()
        unit = sync.run(sync.job(source, sync.target(kind), batch_size=20), "order_lines")
        assert unit.extra["verification"]["target_rows"] == 90


@pytest.mark.mysql
class TestDecimalText:
    """DECIMAL reaches SQLite (which has no decimal type) as the text MySQL shows for it."""

    def test_decimal_text_on_sqlite_keeps_the_columns_scale(
        self, mysql_schema: Any, sync: SyncKit
    ) -> None:
        """Zero of DECIMAL(20,10) lands as `0.0000000000` (it once landed as `0E-10`); every
        value equals MySQL's own `CAST(x AS CHAR)`, digit for digit."""
        source = mysql_schema()
        execute(
            source,
            "CREATE TABLE money (id INT PRIMARY KEY, amount DECIMAL(20,10), big DECIMAL(65,30))",
            "INSERT INTO money VALUES (1, 0, 0), (2, 1.5, -0.000000000000000000000000000001),"
            " (3, -1234567890.0123456789, 99999999999999999999999999999999999.1)",
        )
        target = sync.target("sqlite")
        sync.run(sync.job(source, target), "money")
        expected = fetch(
            source, "SELECT id, CAST(amount AS CHAR), CAST(big AS CHAR) FROM money ORDER BY id"
        )
        assert fetch(target, "SELECT id, amount, big FROM money ORDER BY id") == expected
        assert expected[0][1] == "0.0000000000"


@pytest.mark.mysql
class TestBit64:
    """BIT(64) holds 2^64 - 1; a target type must hold it too, and say so again on the next run."""

    @pytest.mark.parametrize("kind", TARGETS)
    def test_bit_64_copies_verifies_and_plans_again(
        self, kind: str, mysql_schema: Any, sync: SyncKit
    ) -> None:
        """Values up to 2^64 - 1 copy (they once overflowed a signed BIGINT), verify clean,
        and the next plan takes the table the engine itself created."""
        source = mysql_schema()
        execute(
            source,
            "CREATE TABLE b (id INT PRIMARY KEY, v BIT(64), small BIT(3))",
            "INSERT INTO b VALUES (1, 18446744073709551615, 7), (2, 9223372036854775808, 0),"
            " (3, 0, 5), (4, NULL, NULL)",
        )
        target = sync.target(kind)
        job = sync.job(source, target, tables=["b"])
        sync.run(job, "b")
        assert verify_job(job)["b"]["ok"]
        plan = plan_job(job)
        assert not plan.refused, plan.render()
        read = "v + 0, small + 0" if kind == "mysql" else "v, small"
        got = fetch(target, f"SELECT id, {read} FROM b ORDER BY id")  # noqa: S608
        assert [(i, None if v is None else int(v), s) for i, v, s in got] == [
            (1, 2**64 - 1, 7),
            (2, 2**63, 0),
            (3, 0, 5),
            (4, None, None),
        ]


@pytest.mark.mysql
class TestPercentNames:
    """`%` in a table or column name is just a character, on every target and path."""

    @pytest.mark.parametrize("kind", TARGETS)
    def test_percent_in_table_and_column_names(
        self, kind: str, mysql_schema: Any, sync: SyncKit
    ) -> None:
        """The names once reached the server with `%` doubled (quoted for a driver that
        formats, then sent unformatted, or quoted twice), and the table was not found."""
        source = mysql_schema()
        execute(
            source,
            "CREATE TABLE `per%cent%s` (`id%d` INT PRIMARY KEY, `v %(x)s` VARCHAR(20), b BLOB)",
            "INSERT INTO `per%cent%s` SELECT seq, CONCAT('v', seq), X'00FF' FROM seq_1_to_30",
        )
        target = sync.target(kind)
        job = sync.job(source, target, tables=["per%cent%s"], batch_size=7)
        unit = sync.run(job, "per%cent%s")
        assert unit.extra["verification"]["target_rows"] == 30
        quote = "`" if kind == "mysql" else '"'
        table = f"{quote}per%cent%s{quote}"
        # exec_driver_sql in `fetch` is formatted by pymysql/psycopg only with parameters:
        found = fetch(target, f"SELECT COUNT(*) FROM {table}")  # noqa: S608
        assert found == [(30,)]
