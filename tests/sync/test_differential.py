"""`mode: differential`: a target that holds an earlier copy is made equal to the source
by writing only the rows that changed and deleting the rows gone from the source."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest
from sqlalchemy.engine import URL, make_url

from datatrace_tasks.exceptions import JobFileInvalid
from datatrace_tasks.sync.differential import ROWS_PER_BUCKET, bucket_count
from datatrace_tasks.sync.engines import Databases
from datatrace_tasks.sync.fingerprint import Fingerprint, KeyRanges, Side
from datatrace_tasks.sync.job import job_from_dict
from datatrace_tasks.sync.verify import BUCKETS
from tests.sync.helpers import TARGETS, SyncKit, execute, fetch

ROWS = "SELECT id, v FROM big ORDER BY id"  # SQLite reads ts back as text: verify compares it
WITH_TS = "SELECT id, v, ts FROM big ORDER BY id"


@pytest.mark.parametrize("kind", TARGETS)
def test_differential_writes_only_the_changed_rows_and_deletes_the_gone_ones(
    kind: str, edge_source: URL, sync: SyncKit
) -> None:
    """After a full copy, the source changes (an update, an insert, two deletes, one of
    them the last key); the differential run writes 2 rows, deletes 2, verifies, and the
    target equals the source."""
    target = sync.target(kind)
    job = sync.job(edge_source, target, mode="differential", batch_size=100)
    first = sync.run(job, "big")  # the target has no such table yet: a full copy
    assert first.extra["copy"]["path"] != "differential"
    assert first.extra["copy"]["rows_read"] == 1000
    execute(
        edge_source,
        "UPDATE big SET v = 'changed' WHERE id = 10",
        "INSERT INTO big (id, v, ts) VALUES (5000, 'new', '2024-01-01 00:00:00')",
        "DELETE FROM big WHERE id IN (500, 1000)",
    )
    unit = sync.run(job, "big")
    stats = unit.extra["copy"]
    assert stats["path"] == "differential"
    assert (stats["rows_written"], stats["rows_deleted"]) == (2, 2)
    assert unit.extra["verification"]["ok"]
    assert unit.extra["verification"]["target_rows"] == 999
    assert fetch(target, ROWS) == fetch(edge_source, ROWS)


@pytest.mark.parametrize("kind", ["sqlite"])
def test_differential_on_an_equal_target_writes_nothing(
    kind: str, edge_source: URL, sync: SyncKit
) -> None:
    """A second differential run with no change in between compares and writes nothing."""
    target = sync.target(kind)
    job = sync.job(edge_source, target, mode="differential")
    sync.run(job, "pairs")
    reporter = sync.reporter()
    unit = sync.run(job, "pairs", reporter)
    assert unit.extra["copy"]["path"] == "differential"
    assert unit.extra["copy"]["buckets_differing"] == 0
    assert (unit.extra["copy"]["rows_written"], unit.extra["copy"]["rows_deleted"]) == (0, 0)
    assert reporter.processed == 25  # every source row compared


def test_differential_catches_a_target_edited_by_hand(edge_source: URL, sync: SyncKit) -> None:
    """The comparison reads the target, not a log of what was copied: a row damaged on
    the target since the last run is written again."""
    target = sync.target("mysql")
    job = sync.job(edge_source, target, mode="differential")
    sync.run(job, "big")
    execute(target, "UPDATE big SET ts = '2000-01-01 00:00:00' WHERE id = 77")
    unit = sync.run(job, "big")
    assert unit.extra["copy"]["rows_written"] == 1
    assert fetch(target, WITH_TS) == fetch(edge_source, WITH_TS)


def test_differential_needs_upsert() -> None:
    """A differential job that says truncate or append is refused with the reason."""
    with pytest.raises(JobFileInvalid, match="differential needs write_mode: upsert"):
        job_from_dict(
            {
                "name": "x",
                "source": "mysql+pymysql://u@h/db",
                "target": "sqlite:///t.db",
                "mode": "differential",
                "write_mode": "append",
            }
        )


def test_bucket_count_grows_with_the_table() -> None:
    """Small tables keep the verification's buckets; big ones get about 16 rows a bucket."""
    assert bucket_count(10) == BUCKETS
    assert bucket_count(1_000_000) == 1_000_000 // ROWS_PER_BUCKET


EDGE_KEYS = [-(2**63), -33, -17, -16, -15, -1, 0, 1, 15, 16, 29_999, 30_000, 2**63 - 1]


@pytest.mark.parametrize("kind", TARGETS)
@pytest.mark.parametrize("width", [16, 30_000])
def test_key_range_buckets_agree_on_every_server(
    kind: str, width: int, mysql_schema: Callable[[], URL], sync: SyncKit
) -> None:
    """Integer keys at the edges (both ends of BIGINT, either side of zero and of a bucket
    boundary, a width past MySQL's 4 decimals of division) fall in the same key-range
    bucket on the source, on the target and in Python: the floor of key / width; and the
    rows of chosen buckets, read by key ranges (a few) or by bucket number (many), are
    exactly those keys."""
    source = mysql_schema()
    execute(source, "CREATE TABLE ints (id BIGINT PRIMARY KEY, v INT)")
    for key in EDGE_KEYS:
        execute(source, "INSERT INTO ints VALUES (:k, 1)", k=key)
    target = sync.target(kind)
    sync.run(sync.job(source, target), "ints")
    expected = Counter(k // width for k in EDGE_KEYS)
    dbs = Databases(make_url(source), target)
    try:
        table = dbs.table("ints")
        sides = [
            Fingerprint(Side(engine, "ints", table.columns, table.key, True))
            for engine in (dbs.source, dbs.target)
        ]
        ranges = KeyRanges(width)
        for side in sides:
            assert {b: n for b, (n, _) in side.buckets(ranges).items()} == expected
        negative = -17 // width
        # Two buckets are read as key ranges; 200 scattered ones by each row's bucket number.
        many = {b * 2 for b in range(-100, 100)} | {negative}
        for side in sides:
            keys = {int(text) for text in side.rows(ranges, {negative, 0})}
            assert keys == {k for k in EDGE_KEYS if k // width in (negative, 0)}
            keys = {int(text) for text in side.rows(ranges, many)}
            assert keys == {k for k in EDGE_KEYS if k // width in many}
    finally:
        dbs.dispose()


def test_differential_by_key_ranges_sees_a_delete_below_the_source_minimum(
    mysql_schema: Callable[[], URL], sync: SyncKit
) -> None:
    """With negative keys and the lowest key deleted on the source (so the target holds
    a key below every source key, outside the ranges the source's min and max give),
    the key-range comparison still deletes it, writes the update, and verifies."""
    source = mysql_schema()
    execute(
        source,
        "CREATE TABLE neg (id INT PRIMARY KEY, v VARCHAR(10))",
        "INSERT INTO neg SELECT CAST(seq AS SIGNED) - 500, CONCAT('v', seq) FROM seq_1_to_1000",
    )
    target = sync.target("mysql")
    job = sync.job(source, target, mode="differential")
    sync.run(job, "neg")
    execute(source, "DELETE FROM neg WHERE id = -499", "UPDATE neg SET v = 'x' WHERE id = -3")
    unit = sync.run(job, "neg")
    stats = unit.extra["copy"]
    assert stats["buckets"].startswith("key ranges of ")
    assert (stats["rows_written"], stats["rows_deleted"]) == (1, 1)
    assert unit.extra["verification"]["target_rows"] == 999
    rows = "SELECT id, v FROM neg ORDER BY id"
    assert fetch(target, rows) == fetch(source, rows)
