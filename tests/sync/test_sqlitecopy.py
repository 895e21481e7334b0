"""SQLite to SQLite copies inside SQLite (ATTACH + INSERT ... SELECT), page by page."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from datatrace_tasks.exceptions import UnitPaused
from tests.sync.helpers import SyncKit, fetch


def _source(path: Path) -> URL:
    url = make_url(f"sqlite:///{path}")
    md = sa.MetaData()
    columns = [
        sa.Column("order_id", sa.Integer, primary_key=True),
        sa.Column("sku", sa.String(16), primary_key=True),
        sa.Column("price", sa.Numeric(10, 2)),
        sa.Column("placed_at", sa.DateTime),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("raw", sa.LargeBinary, nullable=True),
    ]
    lines = sa.Table("lines", md, *columns)
    engine = sa.create_engine(url)
    md.create_all(engine)
    rows = []
    for o in range(50):
        for sku in ("a", "B", "c'\"`"):
            row = {
                "order_id": o,
                "sku": sku,
                "price": f"{o}.{len(sku):02d}",
                "placed_at": dt.datetime(2024, 1, 1, 12, o % 60, 0, o * 1000),
                "note": None if o % 3 else "取消 😀\t\n",
                "raw": bytes([o, 0, 255]) if o % 2 else None,
            }
            rows.append(row)
    with engine.begin() as conn:
        conn.execute(lines.insert(), rows)
    engine.dispose()
    return url


# DECIMAL: REAL in a SQLAlchemy source, text on the target (SQLite has no decimal type).
SELECT = (
    "SELECT order_id, sku, CAST(price AS TEXT), placed_at, note, raw FROM lines"
    " ORDER BY order_id, sku"
)


class TestAttach:
    """The target reads the source file itself; checkpoints and resume still hold."""

    def test_tables_copy_inside_sqlite_and_verify(self, tmp_path: Path, sync: SyncKit) -> None:
        """Every value arrives as stored, and the copy verifies."""
        source = _source(tmp_path / "source.db")
        target = sync.target("sqlite")
        unit = sync.run(sync.job(source, target, batch_size=20), "lines")
        assert unit.extra["copy"]["path"] == "attach"
        assert unit.extra["verification"]["target_rows"] == 150
        assert fetch(target, SELECT) == fetch(source, SELECT)

    def test_pause_then_resume_copies_the_rest_once(self, tmp_path: Path, sync: SyncKit) -> None:
        """Stopped after 3 pages of 20, the resume reads the other 90 rows and ends exact."""
        source = _source(tmp_path / "source.db")
        target = sync.target("sqlite")
        job = sync.job(source, target, batch_size=20, ranges=1)
        first = sync.reporter(stop_after=3)
        with pytest.raises(UnitPaused):
            sync.run(job, "lines", first)
        assert first.checkpoint["rows"] == 60
        assert fetch(target, "SELECT COUNT(*) FROM lines") == [(60,)]
        unit = sync.run(job, "lines", sync.reporter(first.checkpoint))
        assert unit.extra["copy"]["rows_read"] == 90
        assert fetch(target, SELECT) == fetch(source, SELECT)

    def test_upsert_overwrites_changed_rows(self, tmp_path: Path, sync: SyncKit) -> None:
        """A second run over a changed source leaves the target equal to it."""
        source = _source(tmp_path / "source.db")
        target = sync.target("sqlite")
        job = sync.job(source, target, batch_size=40)
        sync.run(job, "lines")
        engine = sa.create_engine(source)
        with engine.begin() as conn:
            conn.exec_driver_sql("UPDATE lines SET note = 'changed' WHERE order_id = 7")
        engine.dispose()
        sync.run(job, "lines")
        assert fetch(target, SELECT) == fetch(source, SELECT)

    def test_datetime_key_takes_the_typed_path(self, tmp_path: Path, sync: SyncKit) -> None:
        """Pages are cut by raw key values, which only integers and text keep as they are
        in a checkpoint: a table keyed by a datetime is copied typed."""
        url = make_url(f"sqlite:///{tmp_path / 'source.db'}")
        md = sa.MetaData()
        events = sa.Table(
            "events", md, sa.Column("at", sa.DateTime, primary_key=True), sa.Column("v", sa.Text)
        )
        engine = sa.create_engine(url)
        md.create_all(engine)
        start = dt.datetime(2024, 1, 1)
        with engine.begin() as conn:
            conn.execute(
                events.insert(),
                [{"at": start + dt.timedelta(seconds=i), "v": str(i)} for i in range(30)],
            )
        engine.dispose()
        unit = sync.run(sync.job(url, sync.target("sqlite"), batch_size=7), "events")
        assert unit.extra["copy"]["path"] == "upsert"
        assert unit.extra["verification"]["target_rows"] == 30
