"""`python -m bench [--rows N] [--quick] [--full]`: run every benchmark in turn."""

from __future__ import annotations

import sys

from bench import copy


def main() -> None:
    """Run the copy benchmark (the only one so far), passing the arguments through."""
    copy.main(sys.argv[1:])


if __name__ == "__main__":
    main()
