"""docs/internals.md names only what exists: every module path, every imported name, every file.

The how-to "Adding a protocol" is only useful if the names it cites are real, so this test
imports every ``fedsilo.x.y`` it mentions (a module, or a module and then attributes), every name
of every ``from fedsilo... import ...`` line in its examples, checks every repository path it
cites exists, and that every registered protocol's folder is in its layout table.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "internals.md"

#: ``fedsilo.a.b.c`` (not part of a longer word, a host name or a path)
DOTTED = re.compile(r"(?<![\w./-])fedsilo(?:\.[A-Za-z_]\w*)+")
FROM_IMPORT = re.compile(r"^\s*from\s+(fedsilo[\w.]*)\s+import\s+([\w, ]+)$", re.MULTILINE)
#: repository paths; a placeholder such as ``<kind>`` ends the path before it
PATH = re.compile(r"(?<![\w./-])((?:fedsilo|tests|scripts|docs|bench|docker)/[\w./-]*)")
TEST_NAME = re.compile(r"`(test_\w+)`")


def _text() -> str:
    return DOC.read_text(encoding="utf-8")


def _resolve(dotted: str) -> Any:
    """The object ``dotted`` names: its longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: ModuleType | Any = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def test_the_doc_cites_modules_and_names() -> None:
    """Not vacuous: the patterns find what the page is about."""
    dotted = set(DOTTED.findall(_text()))
    assert {"fedsilo.protocols.modules", "fedsilo.silo_node.dispatch.authorize"} <= dotted
    assert len(FROM_IMPORT.findall(_text())) >= 4


@pytest.mark.parametrize("dotted", sorted(set(DOTTED.findall(_text()))))
def test_every_cited_module_path_exists(dotted: str) -> None:
    _resolve(dotted.rstrip("."))


@pytest.mark.parametrize(
    ("module", "names"), sorted(set(FROM_IMPORT.findall(_text()))), ids=lambda v: str(v)
)
def test_every_cited_import_works(module: str, names: str) -> None:
    imported = importlib.import_module(module)
    for name in (n.strip() for n in names.split(",")):
        assert hasattr(imported, name), f"from {module} import {name}"


def test_every_cited_path_exists() -> None:
    missing = []
    for raw in sorted(set(PATH.findall(_text()))):
        path = raw.rstrip(".,;:")
        if not (ROOT / path).exists():
            missing.append(path)
    assert missing == []


def test_every_cited_test_exists() -> None:
    defined = {
        m.group(1)
        for path in (ROOT / "tests").rglob("test_*.py")
        for m in re.finditer(r"^def (test_\w+)", path.read_text(encoding="utf-8"), re.MULTILINE)
    }
    cited = set(TEST_NAME.findall(_text()))
    assert cited and cited <= defined, sorted(cited - defined)


def test_every_protocol_is_in_the_layout_table() -> None:
    from fedsilo.protocols import PROTOCOLS

    text = _text()
    assert "## Adding a protocol" in text
    for p in PROTOCOLS:
        assert f"| `{p.kind}` | `fedsilo/protocols/{p.kind}/` |" in text, p.kind


def test_every_file_of_the_layout_table_exists() -> None:
    """The third column of a table row names files of that protocol's folder."""
    row = re.compile(r"^\| `(\w+)` \| `fedsilo/protocols/(\w+)/` \| (.*) \|$", re.MULTILINE)
    rows = row.findall(_text())
    assert len(rows) >= 9
    for kind, folder, files in rows:
        assert kind == folder
        for name in re.findall(r"`(\w+\.py)`", files):
            assert (ROOT / "fedsilo" / "protocols" / folder / name).is_file(), f"{folder}/{name}"
