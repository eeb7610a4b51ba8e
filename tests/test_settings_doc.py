"""docs/configuration.md carries exactly the settings table that scripts/settings_table.py prints.

So the operator docs cannot drift from ``fedsilo/settings.py``: add or change a setting, run
``python scripts/settings_table.py --write``, commit both. Every setting must say what it is
(a ``#:`` comment right above it), and knobs that moved there stay importable where they were.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from fedsilo import settings

ROOT = Path(__file__).resolve().parent.parent


def _script() -> ModuleType:
    path = ROOT / "scripts" / "settings_table.py"
    spec = importlib.util.spec_from_file_location("settings_table", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("settings_table", module)
    spec.loader.exec_module(module)
    return module


table_script = _script()


def test_doc_carries_exactly_the_generated_table() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    assert table_script.table_in_doc(doc) == table_script.table(), (
        "docs/configuration.md is stale: run `python scripts/settings_table.py --write`"
    )


def test_every_setting_is_in_the_table_and_documented() -> None:
    rows = {name: doc for name, _value, doc in table_script.rows()}
    public = {n for n in vars(settings) if n.isupper()}
    assert set(rows) == public
    undocumented = sorted(n for n, doc in rows.items() if not doc)
    assert not undocumented, f"settings without a #: comment: {undocumented}"


def test_table_is_one_row_per_setting() -> None:
    """A ``|`` inside a doc string must not split a row into extra columns."""
    lines = table_script.table().splitlines()
    assert len(lines) == 2 + len(table_script.rows())
    for line in lines:
        assert line.replace("\\|", "").count("|") == 4, line


def test_the_check_can_fail(tmp_path: Path) -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    stale = doc.replace("`CHUNK_BYTES` | `1 << 20`", "`CHUNK_BYTES` | `1 << 21`")
    assert stale != doc
    assert table_script.table_in_doc(stale) != table_script.table()
    assert table_script.table_in_doc("no markers here") == ""


@pytest.mark.parametrize(
    ("module", "name", "setting"),
    [
        ("fedsilo.ml.metrics", "DEFAULT_THRESHOLDS", "METRICS_DEFAULT_THRESHOLDS"),
        ("fedsilo.ml.metrics", "DEFAULT_BINS", "METRICS_DEFAULT_BINS"),
        ("fedsilo.ml.metrics", "DEFAULT_MAX_CURVE_POINTS", "METRICS_MAX_CURVE_POINTS"),
        ("fedsilo.crypto.certs", "CA_DAYS", "CERT_CA_DAYS"),
        ("fedsilo.crypto.certs", "CERT_DAYS", "CERT_DAYS"),
        ("fedsilo.crypto.certs", "DEFAULT_HOSTS", "CERT_DEFAULT_HOSTS"),
    ],
)
def test_moved_knobs_stay_importable(module: str, name: str, setting: str) -> None:
    assert getattr(importlib.import_module(module), name) == getattr(settings, setting)
