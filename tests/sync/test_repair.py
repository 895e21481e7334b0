"""A resumed unit that failed verification re-copies only the rows that differ."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import URL

from datatrace_tasks.exceptions import VerificationFailed
from tests.sync.helpers import TARGETS, SyncKit, execute, fetch

ROWS = "SELECT id, v FROM big ORDER BY id"


@pytest.mark.parametrize("kind", TARGETS)
def test_resume_after_failed_verification_recopies_only_the_differing_rows(
    kind: str, edge_source: URL, sync: SyncKit
) -> None:
    """A changed, a deleted and an extra target row fail verification; the resume reads
    no range again, repairs those three rows, and verifies clean."""
    target = sync.target(kind)
    job = sync.job(edge_source, target, batch_size=100)
    first = sync.reporter()
    sync.run(job, "big", first)
    execute(
        target,
        "UPDATE big SET v = 'damaged' WHERE id = 10",
        "DELETE FROM big WHERE id = 500",
        "INSERT INTO big (id, v) VALUES (5000, 'stray')",
    )
    with pytest.raises(VerificationFailed, match="only on the target: key 5000"):
        sync.run(job, "big")  # a fresh start upserts every row but cannot see the stray one
    execute(target, "UPDATE big SET v = 'damaged' WHERE id = 10", "DELETE FROM big WHERE id = 500")
    unit = sync.run(job, "big", sync.reporter(first.checkpoint))
    assert unit.extra["copy"]["rows_read"] == 0
    assert unit.extra["copy"]["repaired_rows"] == 3
    assert unit.extra["verification"]["ok"]
    assert fetch(target, ROWS) == fetch(edge_source, ROWS)
