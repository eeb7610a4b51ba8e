"""Print the settings table of docs/configuration.md from fedsilo/settings.py.

Each constant's comment (the ``#:`` lines above it) is its documentation; tests check the doc
carries the table this script prints, so the two cannot drift.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def rows() -> list[tuple[str, str, str]]:
    source = (ROOT / "fedsilo" / "settings.py").read_text()
    lines = source.splitlines()
    out = []
    for node in ast.parse(source).body:
        target = node.target if isinstance(node, ast.AnnAssign) else None
        if not isinstance(target, ast.Name) or node.value is None:
            continue
        doc: list[str] = []
        i = node.lineno - 2
        while i >= 0 and lines[i].lstrip().startswith("#:"):
            doc.insert(0, lines[i].lstrip()[2:].strip())
            i -= 1
        value = ast.get_source_segment(source, node.value) or ""
        out.append((target.id, value, " ".join(doc)))
    return out


def table() -> str:
    body = ["| setting | value | meaning |", "|---|---|---|"]
    body += [f"| `{name}` | `{value}` | {doc} |" for name, value, doc in rows()]
    return "\n".join(body) + "\n"


if __name__ == "__main__":
    sys.stdout.write(table())
