"""`python -m bench [--rows N] [--quick] [--full] ...`: run every benchmark in turn."""

from __future__ import annotations

import argparse
import sys

from bench import copy, overhead, peers, sse, startup, tables


def _peer_args(argv: list[str]) -> list[str]:
    """The options `bench.peers` shares with `bench.copy`: --rows, --repeats, --quick."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--rows", type=int)
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--quick", action="store_true")
    known, _ = parser.parse_known_args(argv)
    args = ["--quick"] if known.quick else []
    args += ["--rows", str(known.rows)] if known.rows else []
    return args + (["--repeats", str(known.repeats)] if known.repeats else [])


def main() -> None:
    """Copy (arguments passed through), peers, many tables, overhead, start-up, SSE fan-out."""
    argv = sys.argv[1:]
    quick = "--quick" in argv
    copy.main(argv)
    peers.main(_peer_args(argv))
    tables.main(["--repeats", "1"] if quick else [])
    overhead.main(["--repeats", "1"] if quick else [])
    startup.main(["--repeats", "1"] if quick else [])
    sse.main(["--seconds", "5"] if quick else [])


if __name__ == "__main__":
    main()
