"""Generate the demo job's SQLite source (examples/data/shop.db), small enough for a laptop.

.venv/bin/python examples/make_demo_source.py [--scale 0.1]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from datatrace_tasks.cli.demo import create_demo_source

HERE = Path(__file__).resolve().parent


def main() -> None:
    """Write examples/data/shop.db and print its tables' row counts."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=0.1, help="grow or shrink every table")
    parser.add_argument("--out", type=Path, default=HERE / "data" / "shop.db")
    args = parser.parse_args()
    rows = create_demo_source(args.out, scale=args.scale)
    print(f"{args.out}: " + ", ".join(f"{t} {n:,}" for t, n in rows.items()))


if __name__ == "__main__":
    main()
