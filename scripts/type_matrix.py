"""Rewrite the README's type matrix from the generated type cases (needs MariaDB).

    DATATRACE_TEST_MYSQL_URL=mysql+pymysql://root@127.0.0.1:3306/test \
        .venv/bin/python scripts/type_matrix.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from datatrace_tasks.sync.engines import Databases  # noqa: E402
from tests.sync.test_verify_matrix import CASES, build_type_source  # noqa: E402
from tests.sync.typecases import MATRIX_BEGIN, MATRIX_END, matrix_markdown  # noqa: E402


def main() -> None:
    """Build the case schema, read its catalog, write the table into README.md."""
    server = make_url(
        os.environ.get("DATATRACE_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1/test")
    )
    url = build_type_source(server)
    dbs = Databases(url, url)
    try:
        catalog = dbs.catalog()
        columns = {case.table: catalog[case.table].column("v") for case in CASES}
    finally:
        dbs.dispose()
        admin = sa.create_engine(server, poolclass=sa.pool.NullPool)
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS `{url.database}`")
        admin.dispose()
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    begin, end = text.index(MATRIX_BEGIN), text.index(MATRIX_END) + len(MATRIX_END)
    readme.write_text(text[:begin] + matrix_markdown(columns) + text[end:], encoding="utf-8")
    print(f"README.md: type matrix of {len(CASES)} cases written")


if __name__ == "__main__":
    main()
