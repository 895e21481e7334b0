"""The bulk write paths: LOAD DATA LOCAL INFILE (MariaDB), COPY (PostgreSQL), and the
fallback to batched upserts when the server refuses or a load is not clean."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from datatrace_tasks.exceptions import VerificationFailed
from datatrace_tasks.sync.engines import Databases
from datatrace_tasks.sync.verify import verify_job
from tests.sync.helpers import BULK_TARGETS, TARGETS, SyncKit, execute, fetch, verify_one

# Every byte LOAD DATA and COPY give a meaning to, in text and in binary columns.
NASTY_TEXT = [
    "tab\there",
    "new\nline",
    "carriage\rreturn",
    "back\\slash",
    "\\N",
    "\\",
    "ends with backslash\\",
    "nul \x00 byte",
    "纵横四海 😀🚀",
    "",
    "quote ' \" `",
    "\\t not a tab",
]
NASTY_BYTES = [b"\x00\xff", b"\\", b"\t\n\r", b"\\N", b"", bytes(range(256))]


@pytest.fixture
def nasty_source(mysql_schema: Callable[[], URL]) -> URL:
    """A MariaDB table whose text and blobs hold tabs, newlines, backslashes, NULs, emoji."""
    url = mysql_schema()
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE nasty (id INT PRIMARY KEY, t TEXT, v VARCHAR(60), b BLOB,"
            " vb VARBINARY(300), n INT, bi BIT(7)) CHARACTER SET utf8mb4"
        )
        rows = []
        for i in range(120):
            rows.append(
                {
                    "id": i,
                    "t": NASTY_TEXT[i % len(NASTY_TEXT)] if i % 7 else None,
                    "v": NASTY_TEXT[(i + 3) % len(NASTY_TEXT)],
                    "b": NASTY_BYTES[i % len(NASTY_BYTES)] if i % 5 else None,
                    "vb": NASTY_BYTES[(i + 1) % len(NASTY_BYTES)],
                    "n": None if i % 3 == 0 else i,
                    "bi": None if i % 4 == 0 else i % 128,
                }
            )
        conn.execute(
            sa.text("INSERT INTO nasty VALUES (:id, :t, :v, :b, :vb, :n, :bi)"),
            rows,
        )
    engine.dispose()
    return url


@pytest.fixture
def local_infile_off(mysql_server: URL) -> Iterator[None]:
    """The server refuses LOAD DATA LOCAL for the duration of the test."""
    admin = sa.create_engine(mysql_server.set(database=None), poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        before = conn.exec_driver_sql("SELECT @@GLOBAL.local_infile").scalar_one()
        conn.exec_driver_sql("SET GLOBAL local_infile = 0")
    try:
        yield
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"SET GLOBAL local_infile = {int(before)}")
        admin.dispose()


SELECT = "SELECT id, t, v, b, vb, n, bi FROM nasty ORDER BY id"


@pytest.mark.mysql
class TestLoadData:
    """MariaDB to MariaDB goes through LOAD DATA LOCAL INFILE, byte for byte."""

    @pytest.mark.parametrize("mode", ["upsert", "append", "truncate"])
    def test_awkward_values_load_exactly(self, mode: str, nasty_source: URL, sync: SyncKit) -> None:
        """NULLs, binary, emoji, backslashes, tabs and newlines arrive unchanged, no fallback."""
        target = sync.target("mysql")
        unit = sync.run(sync.job(nasty_source, target, batch_size=25, write_mode=mode), "nasty")
        assert unit.extra["copy"]["path"] == "load"
        assert unit.extra["copy"]["fallback_batches"] == 0
        assert unit.extra["verification"]["method"] == "server fingerprints"
        assert fetch(target, SELECT) == fetch(nasty_source, SELECT)

    def test_refused_local_infile_falls_back_to_upserts(
        self, local_infile_off: None, nasty_source: URL, sync: SyncKit
    ) -> None:
        """With local_infile off on the server every batch is upserted instead, exactly."""
        target = sync.target("mysql")
        unit = sync.run(sync.job(nasty_source, target, batch_size=25), "nasty")
        assert unit.extra["copy"]["fallback_batches"] == unit.extra["copy"]["batches"] == 5
        assert unit.extra["verification"]["ok"]
        assert fetch(target, SELECT) == fetch(nasty_source, SELECT)

    def test_plain_append_still_refuses_duplicate_keys(
        self, nasty_source: URL, sync: SyncKit
    ) -> None:
        """LOAD DATA LOCAL would skip duplicates with a warning; the batch is redone strictly."""
        target = sync.target("mysql")
        job = sync.job(nasty_source, target, write_mode="append", batch_size=50)
        sync.run(job, "nasty")
        with pytest.raises(sa.exc.IntegrityError):
            sync.run(job, "nasty")
        assert fetch(target, "SELECT COUNT(*) FROM nasty") == [(120,)]

    def test_tampered_target_is_caught_by_server_checksums(
        self, nasty_source: URL, sync: SyncKit
    ) -> None:
        """One changed byte in a blob fails verification and names the row."""
        target = sync.target("mysql")
        job = sync.job(nasty_source, target, batch_size=40)
        sync.run(job, "nasty")
        execute(target, "UPDATE nasty SET vb = CONCAT(vb, 'x') WHERE id = 61")
        result = verify_job(job)["nasty"]
        assert not result["ok"] and "1 row(s) differ: key 61" in result["error"]
        with pytest.raises(VerificationFailed):
            _verify_again(job)


def _verify_again(job: Any) -> None:
    dbs = Databases(job.source_url, job.target_url)
    try:
        verify_one(dbs, "nasty")
    finally:
        dbs.dispose()


@pytest.mark.mysql
@pytest.mark.postgres
class TestCopy:
    """MariaDB to PostgreSQL goes through COPY (staged and merged when upserting)."""

    @pytest.mark.parametrize("mode", ["upsert", "append"])
    def test_awkward_values_copy_exactly(self, mode: str, nasty_source: URL, sync: SyncKit) -> None:
        """Text and bytes arrive unchanged (NUL-free text: PostgreSQL text cannot hold NUL)."""
        execute(
            nasty_source,
            "UPDATE nasty SET t = NULL WHERE LOCATE(CHAR(0), t) > 0",
            "UPDATE nasty SET v = '' WHERE LOCATE(CHAR(0), v) > 0",
        )
        target = sync.target("postgres")
        job = sync.job(nasty_source, target, batch_size=25, write_mode=mode)
        unit = sync.run(job, "nasty")
        assert unit.extra["copy"]["path"] == "copy"
        assert unit.extra["verification"]["ok"]
        source = fetch(nasty_source, "SELECT id, t, v, b, vb, n FROM nasty ORDER BY id")
        copied = fetch(target, "SELECT id, t, v, b, vb, n FROM nasty ORDER BY id")
        as_bytes = [
            (*r[:3], None if r[3] is None else bytes(r[3]), bytes(r[4]), r[5]) for r in copied
        ]
        assert as_bytes == source
        if mode == "upsert":  # a second upsert run merges over the same keys
            again = sync.run(job, "nasty")
            assert again.extra["verification"]["target_rows"] == 120


@pytest.mark.mysql
class TestJoinedPages:
    """The source server joins a page's lines into one value, unless they do not fit."""

    @pytest.mark.parametrize("kind", BULK_TARGETS)
    def test_page_larger_than_a_packet_goes_line_by_line(
        self, kind: str, mysql_schema: Callable[[], URL], sync: SyncKit
    ) -> None:
        """Five 2 MB blobs make 20 MB of hex, more than the 16 MB packet one joined value
        may take: the page is read line by line instead, and nothing is cut."""
        source = mysql_schema()
        execute(
            source,
            "CREATE TABLE wide (id INT PRIMARY KEY, b MEDIUMBLOB)",
            "INSERT INTO wide SELECT seq, REPEAT(CHAR(seq), 2000000) FROM seq_1_to_5",
        )
        job = sync.job(source, sync.target(kind), tables=["wide"], batch_size=10)
        unit = sync.run(job, "wide")  # verifies every byte
        assert unit.extra["copy"]["fallback_batches"] == 0
        assert unit.extra["verification"]["target_rows"] == 5

    @pytest.mark.parametrize("kind", BULK_TARGETS)
    def test_blob_over_half_a_packet_arrives_whole(
        self, kind: str, mysql_schema: Callable[[], URL], sync: SyncKit
    ) -> None:
        """A 9 MB BLOB is 18 MB of hex, more than a 16 MB packet: its line came back NULL
        (with a warning nobody read) and the target got NULL. The page now goes typed."""
        source = mysql_schema()
        execute(
            source,
            "CREATE TABLE huge (id INT PRIMARY KEY, b LONGBLOB NOT NULL)",
            "INSERT INTO huge VALUES (1, REPEAT(X'AB', 9000000)), (2, X'01')",
        )
        target = sync.target(kind)
        unit = sync.run(sync.job(source, target, tables=["huge"]), "huge")  # verifies every byte
        assert unit.extra["verification"]["target_rows"] == 2
        assert fetch(target, "SELECT LENGTH(b) FROM huge ORDER BY id") == [(9000000,), (1,)]


@pytest.mark.parametrize("kind", TARGETS)
def test_a_blob_near_the_packet_limit_reaches_every_target_and_is_checked(
    kind: str, mysql_schema: Callable[[], URL], sync: SyncKit
) -> None:
    """A 15 MB BLOB, just under the server's 16 MB packet (no client can read a longer
    value off it), arrives whole on every target and verifies; one byte changed in its
    middle fails verification naming the key."""
    source = mysql_schema()
    execute(
        source,
        "CREATE TABLE big_blob (id INT PRIMARY KEY, b LONGBLOB NOT NULL)",
        "INSERT INTO big_blob VALUES (1, REPEAT(X'AB', 15000000)), (2, X'00')",
    )
    target = sync.target(kind)
    job = sync.job(source, target, tables=["big_blob"])
    unit = sync.run(job, "big_blob")  # verifies every byte
    assert unit.extra["verification"]["target_rows"] == 2
    assert fetch(target, "SELECT LENGTH(b) FROM big_blob ORDER BY id") == [(15000000,), (1,)]
    one_byte = {  # the 7,500,001st byte becomes 0xAC, by each server itself
        "mysql": "INSERT(b, 7500001, 1, X'AC')",
        "postgres": "overlay(b placing '\\xac'::bytea from 7500001 for 1)",
        "sqlite": ":b",  # SQLite's || would make text of it: the bytes are set from here
    }[kind]
    blob = b"\xab" * 7_500_000 + b"\xac" + b"\xab" * 7_499_999
    execute(target, f"UPDATE big_blob SET b = {one_byte} WHERE id = 1", b=blob)  # noqa: S608
    assert fetch(target, "SELECT LENGTH(b) FROM big_blob WHERE id = 1") == [(15000000,)]
    result = verify_job(job)["big_blob"]
    assert not result["ok"] and "1 row(s) differ: key 1" in result["error"]
