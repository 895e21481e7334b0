"""`python -m bench [--rows N] [--quick] [--full] ...`: run every benchmark in turn."""

from __future__ import annotations

import sys

from bench import copy, overhead, sse, startup, tables


def main() -> None:
    """Copy (arguments passed through), many tables, overhead, start-up, SSE fan-out."""
    argv = sys.argv[1:]
    quick = "--quick" in argv
    copy.main(argv)
    tables.main(["--repeats", "1"] if quick else [])
    overhead.main(["--repeats", "1"] if quick else [])
    startup.main(["--repeats", "1"] if quick else [])
    sse.main(["--seconds", "5"] if quick else [])


if __name__ == "__main__":
    main()
