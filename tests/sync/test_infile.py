"""The target server may ask only for the spool file DataTrace offered (rogue-server guard)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pymysql
import pytest
from sqlalchemy.engine import URL

from datatrace_tasks.sync import engines
from datatrace_tasks.sync.infile import REJECTED, offer

pytestmark = pytest.mark.mysql


def _load(conn: object, path: Path) -> None:
    with conn.cursor() as cur:  # type: ignore[attr-defined]
        cur.execute("LOAD DATA LOCAL INFILE %s INTO TABLE t", (str(path),))


def test_only_the_offered_file_is_sent(mysql_schema: Callable[[], URL], tmp_path: Path) -> None:
    """A LOAD naming any other local file is refused before one byte of it leaves."""
    secret = tmp_path / "secret.txt"
    secret.write_text("1\tprivate key material\n", encoding="utf-8")
    spool = tmp_path / "spool.tsv"
    spool.write_text("2\tbatch row\n", encoding="utf-8")
    engine = engines.create(mysql_schema(), role="target")
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cur:
            cur.execute("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(40))")
            cur.execute("SELECT @@GLOBAL.local_infile")
            if not cur.fetchone()[0]:
                pytest.skip("the server refuses LOAD DATA LOCAL altogether")
        for offered in (None, spool):
            offer(raw, None if offered is None else str(offered))
            with pytest.raises(pymysql.err.OperationalError) as refused:
                _load(raw, secret)
            assert refused.value.args[0] == REJECTED and "secret.txt" in str(refused.value)
        _load(raw, spool)
        raw.commit()
        with raw.cursor() as cur:
            cur.execute("SELECT id, v FROM t")
            assert cur.fetchall() == ((2, "batch row"),)
    finally:
        raw.close()
        engine.dispose()
