"""Fail when a module or a function of the library grows past what one reader holds.

    python scripts/check_sizes.py datatrace_tasks api flows

Limits (issue 14): no module over 400 lines, no function or method over 60 lines
(from its `def` line to its last line, docstring included).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def problems(root: Path) -> list[str]:
    """Every module and function of the tree under `root` that is over its limit."""
    found: list[str] = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n") + (not text.endswith("\n") and bool(text))
        if lines > MAX_MODULE_LINES:
            found.append(f"{path}: {lines} lines (module limit {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(text, filename=str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found.append(
                        f"{path}:{node.lineno}: {node.name} is {length} lines "
                        f"(function limit {MAX_FUNCTION_LINES})"
                    )
    return found


def main(argv: list[str]) -> int:
    """Print each problem; exit 1 if there is any."""
    found = [p for arg in argv for p in problems(Path(arg))]
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["datatrace_tasks"]))
