"""`python -m bench [--rows N] [--quick] [--full] ...`: run every benchmark in turn."""

from __future__ import annotations

import sys

from bench import copy, tables


def main() -> None:
    """The copy benchmark (arguments passed through), then the many-tables one."""
    argv = sys.argv[1:]
    copy.main(argv)
    tables.main(["--repeats", "1"] if "--quick" in argv else [])


if __name__ == "__main__":
    main()
