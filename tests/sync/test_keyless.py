"""Tables without a key are copied whole through a staging table and verified as multisets."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from datatrace_tasks.exceptions import UnitPaused
from datatrace_tasks.sync.verify import verify_job
from tests.sync.helpers import TARGETS, SyncKit, execute, fetch

ROWS = "SELECT a, b, c FROM logs"


def rows(url: Any) -> list[tuple[Any, ...]]:
    """The table's rows in one order on every server (NULL first, times as text)."""
    found = fetch(url, ROWS)
    return sorted((a, b or "", str(c)[:19]) for a, b, c in found)


# Delete one of two equal rows: by the server's own row id where there is no key.
DELETE_ONE = {
    "mysql": "DELETE FROM logs WHERE c = '{stamp}' LIMIT 1",
    "postgres": "DELETE FROM logs WHERE ctid = (SELECT ctid FROM logs WHERE c = '{stamp}' LIMIT 1)",
    "sqlite": "DELETE FROM logs WHERE rowid ="
    " (SELECT rowid FROM logs WHERE c LIKE '{stamp}%' LIMIT 1)",
}


def _logs(mysql_schema: Any) -> Any:
    """A log table with no key: 500 rows, every tenth one twice, some NULLs."""
    source = mysql_schema()
    execute(
        source,
        "CREATE TABLE logs (a INT, b VARCHAR(20), c DATETIME(6))",
        "INSERT INTO logs SELECT seq % 37, IF(seq % 11 = 0, NULL, CONCAT('line ', seq % 50)),"
        " TIMESTAMP('2024-01-01') + INTERVAL seq SECOND FROM seq_1_to_450",
        "INSERT INTO logs SELECT a, b, c FROM logs WHERE a % 10 = 0 LIMIT 50",
    )
    return source


@pytest.mark.mysql
class TestKeyless:
    """A table with neither a primary key nor a NOT NULL unique key."""

    @pytest.mark.parametrize("kind", TARGETS)
    def test_copies_with_duplicates_kept_and_verifies(
        self, kind: str, mysql_schema: Any, sync: SyncKit
    ) -> None:
        """Every row arrives as often as it is in the source, and the copy verifies."""
        source = _logs(mysql_schema)
        target = sync.target(kind)
        unit = sync.run(sync.job(source, target, tables=["logs"], batch_size=64), "logs")
        assert unit.extra["copy"]["path"] == "keyless: staged and swapped"
        ((count,),) = fetch(source, "SELECT COUNT(*) FROM logs")
        assert unit.extra["verification"]["target_rows"] == count
        assert rows(target) == rows(source)

    @pytest.mark.parametrize("kind", TARGETS)
    def test_a_lost_duplicate_fails_verification(
        self, kind: str, mysql_schema: Any, sync: SyncKit
    ) -> None:
        """Deleting one of two equal rows on the target is caught: the check counts rows."""
        source = _logs(mysql_schema)
        target = sync.target(kind)
        job = sync.job(source, target, tables=["logs"])
        sync.run(job, "logs")
        ((stamp,),) = fetch(source, "SELECT c FROM logs GROUP BY c HAVING COUNT(*) = 2 LIMIT 1")
        execute(target, DELETE_ONE[kind].format(stamp=stamp))
        assert len(rows(target)) == len(rows(source)) - 1
        result = verify_job(job)["logs"]
        assert not result["ok"]
        assert "1 row(s) are missing on the target" in result["error"]

    def test_pause_keeps_the_old_table_and_resume_starts_again(
        self, mysql_schema: Any, sync: SyncKit
    ) -> None:
        """Stopped half way, the target still holds its old rows (the copy went to the
        staging table); the resume copies everything again and swaps it in."""
        source = _logs(mysql_schema)
        target = sync.target("sqlite")
        job = sync.job(source, target, tables=["logs"], batch_size=100)
        sync.run(job, "logs")
        execute(source, "INSERT INTO logs VALUES (999, 'new', NULL)")
        first = sync.reporter(stop_after=2)
        with pytest.raises(UnitPaused):
            sync.run(job, "logs", first)
        ((before,),) = fetch(source, "SELECT COUNT(*) - 1 FROM logs")
        assert fetch(target, "SELECT COUNT(*) FROM logs") == [(before,)]
        unit = sync.run(job, "logs", sync.reporter(first.checkpoint))
        assert unit.extra["copy"]["rows_read"] == before + 1
        assert rows(target) == rows(source)
        names = sa.inspect(sa.create_engine(target)).get_table_names()
        assert names == ["logs"], "no staging table is left behind"

    def test_a_changed_row_on_the_target_is_named(self, mysql_schema: Any, sync: SyncKit) -> None:
        """A target changed after the copy fails verification with the row named."""
        source = _logs(mysql_schema)
        target = sync.target("mysql")
        job = sync.job(source, target, tables=["logs"])
        sync.run(job, "logs")
        execute(target, "UPDATE logs SET b = 'changed' WHERE a = 5 LIMIT 1")
        result = verify_job(job)["logs"]
        assert not result["ok"]
        assert "1 row(s) are missing on the target" in result["error"]
        assert "1 row(s) are only on the target: key '5,7:changed," in result["error"]
