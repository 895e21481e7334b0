"""Verification catches differences and names where they are."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import URL

from datatrace_tasks.sync.verify import verify_job
from tests.sync.helpers import TARGETS, SyncKit, execute


@pytest.mark.mysql
class TestVerifyJob:
    """verify_job re-checks a copied target table by table."""

    @pytest.mark.parametrize("kind", TARGETS)
    def test_changed_row_is_found_with_its_key_range(
        self, kind: str, edge_source: URL, sync: SyncKit
    ) -> None:
        """After one target value changes, verify fails naming the chunk and first key."""
        target = sync.target(kind)
        job = sync.job(edge_source, target, batch_size=100, tables=["big", "pairs"])
        sync.run(job, "big")
        sync.run(job, "pairs")
        good = verify_job(job)
        assert good["big"]["ok"] and good["big"]["chunks"] == 1  # default chunk is 2000
        execute(
            target, "UPDATE big SET v = 'tampered' WHERE id = 777", "DELETE FROM pairs WHERE a = 4"
        )
        bad = verify_job(job)
        assert not bad["big"]["ok"]
        assert "first differing key ['777']" in bad["big"]["error"]
        assert not bad["pairs"]["ok"] and "first differing key ['4'," in bad["pairs"]["error"]

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
