"""Verification catches differences and names where they are."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.engine import URL

from datatrace_tasks.sync.engines import Databases
from datatrace_tasks.sync.fingerprint import Fingerprint, Side
from datatrace_tasks.sync.verify import verify_job
from tests.sync.helpers import TARGETS, SyncKit, execute, fetch


@pytest.mark.mysql
class TestVerifyJob:
    """verify_job re-checks a copied target table by table."""

    @pytest.mark.parametrize("kind", TARGETS)
    def test_changed_row_is_found_with_its_key_range(
        self, kind: str, edge_source: URL, sync: SyncKit
    ) -> None:
        """After one target value changes and one row goes, verify fails naming both keys."""
        target = sync.target(kind)
        job = sync.job(edge_source, target, batch_size=100, tables=["big", "pairs"])
        sync.run(job, "big")
        sync.run(job, "pairs")
        good = verify_job(job)
        assert good["big"]["ok"] and not good["big"]["rechecked"]
        execute(
            target, "UPDATE big SET v = 'tampered' WHERE id = 777", "DELETE FROM pairs WHERE a = 4"
        )
        bad = verify_job(job)
        assert not bad["big"]["ok"]
        assert "1 row(s) differ: key 777" in bad["big"]["error"]
        assert not bad["pairs"]["ok"] and "missing on the target: key (4," in bad["pairs"]["error"]

    def test_checksums_agree_across_targets(self, edge_source: URL, sync: SyncKit) -> None:
        """The same source gives the same checksum whichever target it was copied to."""
        sums = []
        for kind in ("mysql", "sqlite"):
            unit = sync.run(sync.job(edge_source, sync.target(kind)), "nulls")
            sums.append(unit.extra["verification"]["checksum"])
        assert sums[0] == sums[1]

    def test_missing_target_table_is_reported(self, edge_source: URL, sync: SyncKit) -> None:
        """A table never copied is reported as failed, not created."""
        result = verify_job(sync.job(edge_source, sync.target("sqlite"), tables=["texts"]))
        assert result["texts"] == {
            "table": "texts",
            "ok": False,
            "error": "table 'texts' does not exist on the target",
        }


# Values a FLOAT holds exactly that MySQL's 6-digit text form of FLOAT does not.
FLOATS = ["16777216", "3.4028234663852886e38", "0.1", "1.17549435e-38", "-123.456"]


@pytest.mark.mysql
class TestFloatPrecision:
    """FLOAT (single precision) travels as the full value the server holds."""

    @pytest.mark.parametrize("kind", TARGETS)
    def test_float_copies_to_every_bit(self, kind: str, mysql_schema: Any, sync: SyncKit) -> None:
        """Each FLOAT reaches the target as the exact single-precision value (it once came
        as its 6-digit text: 16777216 as 16777200), and the copy verifies clean."""
        source = mysql_schema()
        rows = ", ".join(f"({i}, {v})" for i, v in enumerate(FLOATS, 1))
        execute(
            source,
            "CREATE TABLE f (id INT PRIMARY KEY, v FLOAT)",
            f"INSERT INTO f VALUES {rows}",  # noqa: S608 - fixed test values
        )
        target = sync.target(kind)
        job = sync.job(source, target, tables=["f"])
        sync.run(job, "f")
        exact = fetch(source, "SELECT id, v + 0e0 FROM f ORDER BY id")
        read = "v + 0e0" if kind == "mysql" else "v"
        assert fetch(target, f"SELECT id, {read} FROM f ORDER BY id") == exact  # noqa: S608
        assert verify_job(job)["f"]["ok"]

    @pytest.mark.parametrize("kind", TARGETS)
    def test_one_ulp_of_a_float_fails_verify(
        self, kind: str, mysql_schema: Any, sync: SyncKit
    ) -> None:
        """One single-precision ulp changed on the target is a mismatch naming the key."""
        source = mysql_schema()
        execute(
            source,
            "CREATE TABLE f (id INT PRIMARY KEY, v FLOAT)",
            "INSERT INTO f VALUES (1, 16777216), (2, 0.5)",
        )
        target = sync.target(kind)
        job = sync.job(source, target, tables=["f"])
        sync.run(job, "f")
        # 16777218 is the next single-precision value (and a double holds it exactly).
        execute(target, "UPDATE f SET v = 16777218 WHERE id = 1")
        result = verify_job(job)["f"]
        assert not result["ok"] and "1 row(s) differ: key 1" in result["error"]


@pytest.mark.mysql
class TestDecimalDigits:
    """DECIMAL is compared to its last digit, all 65 of them."""

    @pytest.mark.parametrize("kind", TARGETS)
    def test_last_digit_of_a_decimal_65_30_fails_verify(
        self, kind: str, mysql_schema: Any, sync: SyncKit
    ) -> None:
        """A change in the 30th decimal place of a 65-digit value is a mismatch (it once
        passed: the comparison rounded to 28 significant digits)."""
        big = "9" * 35 + "." + "9" * 30
        source = mysql_schema()
        execute(
            source,
            "CREATE TABLE d (id INT PRIMARY KEY, v DECIMAL(65,30))",
            f"INSERT INTO d VALUES (1, {big}), (2, 0)",  # noqa: S608 - a fixed value
        )
        target = sync.target(kind)
        job = sync.job(source, target, tables=["d"])
        sync.run(job, "d")
        assert verify_job(job)["d"]["ok"]
        changed = big[:-1] + "8"
        value = f"'{changed}'" if kind == "sqlite" else changed  # SQLite keeps DECIMAL as text
        execute(target, f"UPDATE d SET v = {value} WHERE id = 1")  # noqa: S608
        result = verify_job(job)["d"]
        assert not result["ok"] and "1 row(s) differ: key 1" in result["error"]


@pytest.mark.mysql
class TestParallelScan:
    """A big table's fingerprint is summed over key ranges scanned at once."""

    @pytest.mark.parametrize("kind", TARGETS)
    def test_ranges_sum_to_the_whole_and_still_catch_a_change(
        self, kind: str, edge_source: URL, sync: SyncKit
    ) -> None:
        """However a side cuts its table, the total is the same; a change in any range
        moves it."""
        target = sync.target(kind)
        job = sync.job(edge_source, target, tables=["big"])
        sync.run(job, "big")
        dbs = Databases(job.source_url, job.target_url)
        try:
            table = dbs.table("big")
            side = Fingerprint(Side(dbs.target, "big", table.columns, table.key, True))
            whole = side.total()
            assert whole[0] == 1000
            for parts in (2, 3, 7):
                assert side.total(parts=parts, rows=1000) == whole
            execute(target, "UPDATE big SET v = 'changed' WHERE id = 999")
            assert side.total(parts=3, rows=1000) != whole
        finally:
            dbs.dispose()
