"""Verification catches differences and names where they are."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from datatrace_tasks.sync.verify import verify_job

TARGETS = [
    pytest.param("mysql", marks=pytest.mark.mysql, id="mariadb"),
    pytest.param("postgres", marks=[pytest.mark.mysql, pytest.mark.postgres], id="postgres"),
    pytest.param("sqlite", marks=pytest.mark.mysql, id="sqlite"),
]


@pytest.mark.mysql
class TestVerifyJob:
    """verify_job re-checks a copied target table by table."""

    @pytest.mark.parametrize("kind", TARGETS)
    def test_changed_row_is_found_with_its_key_range(
        self,
        kind: str,
        edge_source: URL,
        target_url: Callable[[str], URL],
        job_for: Callable[..., Any],
        run: Callable[..., Any],
    ) -> None:
        """After one target value changes, verify fails naming the chunk and first key."""
        target = target_url(kind)
        job = job_for(edge_source, target, batch_size=100, tables=["big", "pairs"])
        run(job, "big")
        run(job, "pairs")
        good = verify_job(job)
        assert good["big"]["ok"] and good["big"]["chunks"] == 1  # default chunk is 2000
        engine = sa.create_engine(target, poolclass=sa.pool.NullPool)
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE big SET v = 'tampered' WHERE id = 777"))
            conn.execute(sa.text("DELETE FROM pairs WHERE a = 4"))
        engine.dispose()
        bad = verify_job(job)
        assert not bad["big"]["ok"]
        assert "first differing key ['777']" in bad["big"]["error"]
        assert not bad["pairs"]["ok"] and "first differing key ['4'," in bad["pairs"]["error"]

    def test_checksums_agree_across_targets(
        self,
        edge_source: URL,
        target_url: Callable[[str], URL],
        job_for: Callable[..., Any],
        run: Callable[..., Any],
    ) -> None:
        """The same source gives the same checksum whichever target it was copied to."""
        sums = []
        for kind in ("mysql", "sqlite"):
            unit = run(job_for(edge_source, target_url(kind)), "nulls")
            sums.append(unit.extra["verification"]["checksum"])
        assert sums[0] == sums[1]

    def test_missing_target_table_is_reported(
        self, edge_source: URL, target_url: Callable[[str], URL], job_for: Callable[..., Any]
    ) -> None:
        """A table never copied is reported as failed, not created."""
        result = verify_job(job_for(edge_source, target_url("sqlite"), tables=["texts"]))
        assert result["texts"] == {
            "table": "texts",
            "ok": False,
            "error": "table 'texts' does not exist on the target",
        }
