"""Disjoint key ranges of one table, copied side by side, each with its own checkpoint.

A big table is cut at key values into ranges `(lo, hi]` (the first starts at the
beginning, the last runs to the end). Every range remembers the last key it
committed, so a resumed unit continues each range after its own last batch and
re-copies at most one batch per range.

Checkpoint JSON (what `ProgressReporter.report` receives):

- one range (small tables, and every checkpoint written before ranges existed):
  `{"last_key": [...] | null, "rows": n}`
- several ranges: `{"rows": n, "ranges": [{"lo", "hi", "last_key", "rows", "done"}]}`
  with keys encoded by `checkpoint.encode_key` (`lo`/`hi` null: open end).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from datatrace_tasks.sync.catalog import SourceTable
from datatrace_tasks.sync.checkpoint import decode_key, encode_key

Key = tuple[Any, ...]

MAX_AUTO_RANGES = 3
"""Ranges per table when the job leaves `ranges` to the engine."""
BATCHES_PER_RANGE = 8
"""A table is split only when each range gets at least this many batches."""


@dataclass
class KeyRange:
    """Keys `lo < k <= hi` (None: open end); `last_key`: where the next batch starts after."""

    lo: Key | None
    hi: Key | None
    last_key: Key | None = None
    rows: int = 0
    done: bool = False

    @property
    def start(self) -> Key | None:
        """The key the next batch starts after (exclusive)."""
        return self.last_key if self.last_key is not None else self.lo

    def to_json(self) -> dict[str, Any]:
        """The JSON-safe form kept in the checkpoint."""
        return {
            "lo": None if self.lo is None else encode_key(self.lo),
            "hi": None if self.hi is None else encode_key(self.hi),
            "last_key": None if self.last_key is None else encode_key(self.last_key),
            "rows": self.rows,
            "done": self.done,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> KeyRange:
        """The range `to_json` wrote."""

        def key(name: str) -> Key | None:
            value = data.get(name)
            return None if value is None else decode_key(value)

        return cls(
            key("lo"), key("hi"), key("last_key"), int(data.get("rows", 0)), bool(data["done"])
        )


def auto_ranges(estimated_rows: int, batch_size: int, wanted: int | None) -> int:
    """How many ranges to cut: `wanted`, or enough that each has BATCHES_PER_RANGE batches."""
    if wanted is not None:
        return max(1, wanted)
    by_size = estimated_rows // (batch_size * BATCHES_PER_RANGE)
    return max(1, min(MAX_AUTO_RANGES, by_size))


def split(engine: Engine, table: SourceTable, parts: int, total: int) -> list[KeyRange]:
    """Cut the table at `parts - 1` key values, near equal row counts apart.

    Each cut is the key at an offset of the key order (an index-only scan); duplicate
    cuts (fewer rows than estimated) are dropped, so every range is non-empty or last.
    """
    parts = min(parts, total)  # more ranges than rows: an offset would go below zero
    if parts <= 1:
        return [KeyRange(None, None)]
    sa_table = table.source_rows()
    keys = [sa_table.c[name] for name in table.key]
    cuts: list[Key] = []
    with engine.connect() as conn:
        for i in range(1, parts):
            offset = max(0, total * i // parts - 1)
            stmt = sa.select(*keys).order_by(*keys).offset(offset).limit(1)
            row = conn.execute(stmt).first()
            if row is None:
                break
            cut = tuple(row)
            if not cuts or cut != cuts[-1]:  # the database's order, not Python's
                cuts.append(cut)
    bounds: list[Key | None] = [None, *cuts, None]
    return [KeyRange(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]


def from_checkpoint(checkpoint: Mapping[str, Any] | None) -> list[KeyRange] | None:
    """The ranges a checkpoint holds (one open range for the single-range form)."""
    if checkpoint is None:
        return None
    if "ranges" in checkpoint:
        return [KeyRange.from_json(r) for r in checkpoint["ranges"]]
    last = checkpoint.get("last_key")
    return [
        KeyRange(
            None,
            None,
            None if last is None else decode_key(last),
            int(checkpoint.get("rows", 0)),
        )
    ]


def to_checkpoint(ranges: Sequence[KeyRange]) -> dict[str, Any]:
    """The checkpoint of the ranges (the single-range form when there is one)."""
    rows = sum(r.rows for r in ranges)
    if len(ranges) == 1 and ranges[0].lo is None and ranges[0].hi is None:
        last = ranges[0].last_key
        return {"last_key": None if last is None else encode_key(last), "rows": rows}
    return {"rows": rows, "ranges": [r.to_json() for r in ranges]}
