"""Keyset paging over every kind of key: no row skipped, none repeated.

Keys of BIT, FLOAT, DOUBLE, SET and TIME columns skipped rows (or never ended) in a
keyset scan when this test was first run; such a table is now copied as one without
a key (whole, staged and swapped), and the test checks it is.

For each key type (generated from the type cases where MariaDB allows it as a key,
plus text keys under case-insensitive, case-sensitive and binary collations and a
composite key), a table keyed by it is copied to every target with 1-row pages and
odd pages, cut into several ranges. The target must then hold as many rows as the
source, counted by each server (`COUNT(*)`), and the servers' key-and-row
fingerprints must agree (verification): the scan itself is never the judge.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from tests.sync.conftest import new_name
from tests.sync.helpers import TARGETS, SyncKit, fetch
from tests.sync.typecases import generated_cases

# Types MariaDB cannot index as a whole key, or not without a prefix length.
_NOT_KEYS = frozenset(
    {"tinytext", "text", "mediumtext", "longtext", "json", "tinyblob", "blob", "mediumblob"}
    | {"longblob", "point", "geometry"}
)


@dataclass(frozen=True)
class KeyCase:
    """A table keyed by `k`, with its DDL and rows."""

    slug: str
    ddl: str
    rows: str  # an INSERT ... SELECT or VALUES


def _from_type_cases() -> list[KeyCase]:
    out = []
    for case in generated_cases():
        if case.slug in _NOT_KEYS:
            continue
        table = f"k_{case.slug}"
        column = case.column_type.replace(" NULL", "")
        values = ", ".join(f"({lit}, {i})" for i, lit in enumerate(case.literals))
        out.append(
            KeyCase(
                case.slug,
                f"CREATE TABLE {table} (k {column} NOT NULL PRIMARY KEY, n INT)",
                f"INSERT IGNORE INTO {table} VALUES {values}",  # noqa: S608
            )
        )
    return out


def _text_keys() -> list[KeyCase]:
    words = (
        "SELECT CONCAT(CHAR(65 + MOD(seq, 26)), LPAD(seq, 4, '0'), IF(MOD(seq, 3) = 0, ' ', '')),"
        " seq"
    )
    out = []
    for slug, collation in (
        ("varchar_ci", "utf8mb4_general_ci"),
        ("varchar_cs", "utf8mb4_bin"),
        ("varchar_nopad", "utf8mb4_nopad_bin"),
        ("varchar_unicode", "utf8mb4_unicode_ci"),
    ):
        table = f"k_{slug}"
        out.append(
            KeyCase(
                slug,
                f"CREATE TABLE {table} (k VARCHAR(20) COLLATE {collation} NOT NULL PRIMARY KEY,"
                " n INT)",
                f"INSERT IGNORE INTO {table} {words} FROM seq_1_to_200",  # noqa: S608
            )
        )
    out.append(
        KeyCase(
            "composite",
            "CREATE TABLE k_composite (a INT NOT NULL, b VARCHAR(10) NOT NULL, c DATE NOT NULL,"
            " n INT, PRIMARY KEY (a, b, c))",
            "INSERT INTO k_composite SELECT MOD(seq, 5), CHAR(97 + MOD(seq, 7)),"
            " DATE('2024-01-01') + INTERVAL MOD(seq, 11) DAY, seq FROM seq_1_to_385",
        )
    )
    return out


KEYS = _from_type_cases() + _text_keys()
UNPAGED = ("bit_", "float", "double", "set", "time_")


@pytest.fixture(scope="module")
def key_source(mysql_server: URL) -> Iterator[URL]:
    """One MariaDB schema with a table per key case."""
    name = new_name("dt_keys")
    admin = sa.create_engine(mysql_server, poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA `{name}` CHARACTER SET utf8mb4")
    url = mysql_server.set(database=name)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql("SET time_zone = '+00:00'")
        for case in KEYS:
            conn.exec_driver_sql(case.ddl)
            conn.exec_driver_sql(case.rows)
    engine.dispose()
    yield url
    with admin.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS `{name}`")
    admin.dispose()


@pytest.mark.parametrize("kind", TARGETS)
@pytest.mark.parametrize("case", KEYS, ids=[c.slug for c in KEYS])
def test_keyset_paging_neither_skips_nor_repeats(
    case: KeyCase, kind: str, key_source: URL, sync: SyncKit
) -> None:
    """1-row pages in one range, then 3-row pages in 3 ranges: the servers count the
    same rows on both sides and their fingerprints agree."""
    table = f"k_{case.slug}"
    ((count,),) = fetch(key_source, f"SELECT COUNT(*) FROM {table}")  # noqa: S608
    assert count >= 1
    for batch, ranges in ((1, 1), (3, 3)):
        target = sync.target(kind)
        job = sync.job(key_source, target, tables=[table], batch_size=batch, ranges=ranges)
        unit = sync.run(job, table)  # verification: COUNT(*) and fingerprints per server
        assert unit.extra["verification"]["source_rows"] == count
        if case.slug.startswith(UNPAGED):  # these keys once skipped rows: copied whole now
            assert unit.extra["copy"]["path"] == "keyless: staged and swapped"
        assert fetch(target, f"SELECT COUNT(*) FROM {table}") == [(count,)]  # noqa: S608
