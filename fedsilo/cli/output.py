"""How commands print results: one JSON document with ``--json``, else tables with headers.

A JSON document goes to stdout alone (progress and errors go to stderr), so
``fedsilo jobs --json | jq`` always parses. Tables are plain aligned text: greppable, never
truncated, with a header row; listings put the newest first.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

__all__ = ["print_json", "print_table"]


def print_json(document: Any) -> None:
    """``document`` as one indented JSON document on stdout."""
    print(json.dumps(document, indent=2, default=str))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value).replace("\n", " ")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, empty: str) -> None:
    """An aligned table with a header row, or the line ``empty`` when there are no rows."""
    if not rows:
        print(empty)
        return
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    for line in [list(headers), *cells]:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
