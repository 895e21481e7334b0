"""Verification catches the smallest change of every type, on every target.

For each generated type case (`typecases.py`) and each target, the table is copied and
verifies clean; then each stored value in turn is moved to its neighbour on the target
(one unit of the last DECIMAL digit, one ulp of a FLOAT or DOUBLE, one microsecond,
one bit of a byte, one trailing space, another ENUM member ...), and verification must
fail naming the table and that row's key, until the value is put back.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from datatrace_tasks.exceptions import VerificationFailed
from datatrace_tasks.sync.engines import Databases
from tests.sync.conftest import new_name
from tests.sync.helpers import PATHS, SyncKit, use_path, verify_one
from tests.sync.typecases import (
    MATRIX_BEGIN,
    MATRIX_END,
    Case,
    generated_cases,
    matrix_markdown,
    nudge,
)

CASES = generated_cases()


def build_type_source(mysql_server: URL) -> URL:
    """A new MariaDB schema holding every case's table; returns its URL."""
    name = new_name("dt_types")
    admin = sa.create_engine(mysql_server, poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA `{name}` CHARACTER SET utf8mb4")
    admin.dispose()
    url = mysql_server.set(database=name)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql("SET time_zone = '+00:00'")
        for case in CASES:
            conn.exec_driver_sql(case.create_sql())
            conn.exec_driver_sql(case.insert_sql())
    engine.dispose()
    return url


@pytest.fixture(scope="module")
def type_source(mysql_server: URL) -> Iterator[URL]:
    """One MariaDB schema holding every case's table, built once for the module."""
    url = build_type_source(mysql_server)
    yield url
    admin = sa.create_engine(mysql_server, poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS `{url.database}`")
    admin.dispose()


def _read_expression(case: Case, kind: str) -> str:
    # A MySQL FLOAT's text has 6 digits; read the value itself to nudge it by one ulp.
    return "v + 0e0" if kind == "mysql" and case.slug == "float" else "v"


@pytest.mark.parametrize(("kind", "path"), PATHS)
@pytest.mark.parametrize("case", CASES, ids=[c.slug for c in CASES])
def test_one_changed_value_fails_verification(
    case: Case,
    kind: str,
    path: str,
    type_source: URL,
    sync: SyncKit,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The copy (through `path`) verifies clean; each value moved by the smallest step
    its type holds fails verification naming the table and the key; put back, it
    verifies clean."""
    use_path(monkeypatch, path)
    target = sync.target(kind)
    job = sync.job(type_source, target, tables=[case.table])
    unit = sync.run(job, case.table)  # verifies: the untouched copy is clean
    if path == "bulk":
        assert unit.extra["copy"]["fallback_batches"] == 0, "every value went as bulk text"
    engine = sa.create_engine(target, poolclass=sa.pool.NullPool)
    dbs = Databases(job.source_url, job.target_url)
    read = _read_expression(case, kind)
    try:
        with engine.connect() as conn:
            stored: list[tuple[int, Any]] = [
                (int(i), v)
                for i, v in conn.execute(sa.text(f"SELECT id, {read} FROM {case.table}"))  # noqa: S608
                if v is not None
            ]
        assert stored, "the case has values"
        update = sa.text(f"UPDATE {case.table} SET v = :v WHERE id = :id")  # noqa: S608
        for key, value in stored:
            with engine.begin() as conn:
                conn.execute(update, {"v": nudge(case, value, target=kind), "id": key})
            with pytest.raises(VerificationFailed) as caught:
                verify_one(dbs, case.table)
            message = str(caught.value)
            assert f"table {case.table!r}" in message and f"differ: key {key}" in message, (
                f"{case.slug} row {key} ({value!r}): {message}"
            )
            with engine.begin() as conn:
                conn.execute(update, {"v": value, "id": key})
        verify_one(dbs, case.table)
    finally:
        dbs.dispose()
        engine.dispose()


@pytest.mark.mysql
def test_readme_type_matrix_is_current(type_source: URL) -> None:
    """The README's type matrix is what the cases and the type mapping give today
    (`python scripts/type_matrix.py` rewrites it)."""
    dbs = Databases(type_source, type_source)
    try:
        catalog = dbs.catalog()
        columns = {case.table: catalog[case.table].column("v") for case in CASES}
    finally:
        dbs.dispose()
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    begin, end = readme.index(MATRIX_BEGIN), readme.index(MATRIX_END) + len(MATRIX_END)
    assert readme[begin:end] == matrix_markdown(columns)
