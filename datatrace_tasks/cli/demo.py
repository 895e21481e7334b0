"""The demo source: a small shop database in SQLite, generated with a fixed seed."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    create_engine,
    insert,
)

# (table, rows): from a few thousand rows to 200,000, as a real schema would have.
DEMO_TABLES: dict[str, int] = {
    "regions": 3_000,
    "customers": 20_000,
    "products": 5_000,
    "orders": 60_000,
    "order_items": 200_000,
    "page views": 80_000,  # a name that needs quoting
}


def _schema() -> MetaData:
    md = MetaData()
    Table("regions", md, Column("id", Integer, primary_key=True), Column("name", String(40)))
    Table(
        "customers",
        md,
        Column("id", Integer, primary_key=True),
        Column("name", String(80)),
        Column("email", String(120)),
        Column("region_id", Integer),
        Column("signed_up", Date),
    )
    Table(
        "products",
        md,
        Column("sku", String(16), primary_key=True),
        Column("title", String(120)),
        Column("price", Numeric(10, 2)),
    )
    Table(
        "orders",
        md,
        Column("id", Integer, primary_key=True),
        Column("customer_id", Integer),
        Column("placed_at", DateTime),
        Column("note", Text, nullable=True),
    )
    Table(
        "order_items",
        md,
        Column("order_id", Integer, primary_key=True),
        Column("line_no", Integer, primary_key=True),
        Column("sku", String(16)),
        Column("quantity", Integer),
        Column("price", Numeric(10, 2)),
    )
    Table(
        "page views",
        md,
        Column("id", Integer, primary_key=True),
        Column("path", String(200)),
        Column("seen_at", DateTime),
    )
    return md


def create_demo_source(path: Path, *, seed: int = 7, scale: float = 1.0) -> dict[str, int]:
    """(Re)create the demo database at `path`; returns rows per table.

    `scale` shrinks or grows every table (tests use a small demo, benchmarks a big one).
    """
    n = {name: max(1, round(rows * scale)) for name, rows in DEMO_TABLES.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    rnd = random.Random(seed)
    md = _schema()
    engine = create_engine(f"sqlite:///{path}")
    md.create_all(engine)
    t = md.tables
    rows = {**_catalog_rows(n, rnd), **_order_rows(n, rnd)}
    with engine.begin() as conn:
        for name, data in rows.items():
            conn.execute(insert(t[name]), data)
    engine.dispose()
    return {name: len(data) for name, data in rows.items()}


_BASE = datetime(2026, 1, 1)


def _catalog_rows(n: dict[str, int], rnd: random.Random) -> dict[str, list[dict[str, Any]]]:
    """Regions, customers (names in several scripts, emoji) and products."""
    words = ["北京", "Lyon", "São Paulo", "Nairobi", "Oslo", "東京", "Zürich", "Lima"]
    return {
        "regions": [
            {"id": i, "name": f"{rnd.choice(words)}-{i}"} for i in range(1, n["regions"] + 1)
        ],
        "customers": [
            {
                "id": i,
                "name": f"customer {i} {rnd.choice(['😀', 'é', '', 'ß'])}",
                "email": f"c{i}@example.com",
                "region_id": rnd.randint(1, n["regions"]),
                "signed_up": (_BASE - timedelta(days=rnd.randint(0, 900))).date(),
            }
            for i in range(1, n["customers"] + 1)
        ],
        "products": [
            {
                "sku": f"SKU-{i:06d}",
                "title": f"product {i}",
                "price": Decimal(rnd.randint(100, 99_999)) / 100,
            }
            for i in range(1, n["products"] + 1)
        ],
    }


def _order_rows(n: dict[str, int], rnd: random.Random) -> dict[str, list[dict[str, Any]]]:
    """Orders, their lines (a composite key) and page views (a table name with a space)."""
    return {
        "orders": [
            {
                "id": i,
                "customer_id": rnd.randint(1, n["customers"]),
                "placed_at": _BASE + timedelta(seconds=rnd.randint(0, 30_000_000)),
                "note": None if i % 3 else f"gift wrap #{i}",
            }
            for i in range(1, n["orders"] + 1)
        ],
        "order_items": [
            {
                "order_id": 1 + k // 4,
                "line_no": 1 + k % 4,
                "sku": f"SKU-{rnd.randint(1, n['products']):06d}",
                "quantity": rnd.randint(1, 9),
                "price": Decimal(rnd.randint(100, 99_999)) / 100,
            }
            for k in range(n["order_items"])
        ],
        "page views": [
            {
                "id": i,
                "path": f"/p/{rnd.randint(1, n['products'])}",
                "seen_at": _BASE + timedelta(seconds=i),
            }
            for i in range(1, n["page views"] + 1)
        ],
    }
