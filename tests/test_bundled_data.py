"""The bundled data (``tests/data/``) is intact and nothing reads a file outside the checkout.

A user's clone has no ``shared/`` folder beside it: the suite, the benchmarks and the demo
generator read only what ships in the repository. The checksums say the bundled files are the
published ones; the scan fails on any path that climbs out of the checkout.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import subprocess
import sys
from pathlib import Path

import pytest
from bundled_data import DATA_DIR, data_file, load_csv

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("fedsilo", "tests", "bench", "scripts", "docker")
TEXT_SUFFIXES = {".py", ".md", ".toml", ".txt", ".cfg", ".ini", ".sh", ".yml", ".yaml", ""}
#: a path to the reference data beside the checkout, however it is spelt.
OUTSIDE = (
    re.compile(r"shared[/\\]+data"),
    re.compile(r"\.\.[/\\]+shared"),
    re.compile(r"""["']shared["']\s*/\s*["']data["']"""),
)
PARENTS_INDEX = re.compile(r"__file__\)(?:\.resolve\(\))?\.parents\[(\d+)\]")
PARENT_CHAIN = re.compile(r"__file__\)(?:\.resolve\(\))?((?:\.parent\b)+)")


def _sums(name: str) -> dict[str, str]:
    lines = (DATA_DIR / name).read_text().splitlines()
    return {file: digest for digest, file in (line.split(maxsplit=1) for line in lines if line)}


def _scanned_files() -> list[Path]:
    files = []
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*")):
            parts = path.relative_to(ROOT).parts
            if any(p == "__pycache__" or p.startswith(".") for p in parts):
                continue
            if path.is_file() and path.suffix in TEXT_SUFFIXES:
                files.append(path)
    return files


def test_compressed_files_match_sha256sums() -> None:
    sums = _sums("SHA256SUMS")
    assert sorted(sums) == sorted(p.name for p in DATA_DIR.glob("*.csv.gz"))
    for name, digest in sums.items():
        assert hashlib.sha256((DATA_DIR / name).read_bytes()).hexdigest() == digest, name


def test_decompressed_files_are_the_published_ones() -> None:
    sums = _sums("SHA256SUMS.uncompressed")
    assert sorted(f"{name}.gz" for name in sums) == sorted(_sums("SHA256SUMS"))
    for name, digest in sums.items():
        with gzip.open(DATA_DIR / f"{name}.gz", "rb") as fh:
            assert hashlib.file_digest(fh, "sha256").hexdigest() == digest, name


def test_readme_states_every_file() -> None:
    readme = (DATA_DIR / "README.md").read_text()
    assert "CC BY 4.0" in readme and "Apache-2.0" in readme
    for path in DATA_DIR.glob("*.csv.gz"):
        stem = path.name.removesuffix(".csv.gz")
        # a row names a file in full, or as a suffix after a full name (`_host_1.csv.gz`)
        assert path.name in readme or f"_{stem.rsplit('_', 1)[-1]}.csv.gz" in readme, path.name


def test_loader_reads_the_bundled_files() -> None:
    guest = load_csv("breast_hetero_guest")
    assert guest.shape == (569, 12)
    assert set(guest[:, 1]) == {0.0, 1.0}
    with pytest.raises(FileNotFoundError, match="no bundled data set"):
        data_file("../breast_hetero_guest")


def test_no_code_reads_the_data_beside_the_checkout() -> None:
    found = []
    for path in _scanned_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for lineno, line in enumerate(text.splitlines(), 1):
            if any(p.search(line) for p in OUTSIDE):
                found.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}")
    assert not found, "paths outside the checkout:\n" + "\n".join(found)


def test_no_module_climbs_above_the_checkout_from_its_own_path() -> None:
    """``Path(__file__).parents[k]`` (or k+1 ``.parent``s) leaves the checkout once k >= depth."""
    found = []
    for path in _scanned_files():
        if path.suffix != ".py":
            continue
        depth = len(path.relative_to(ROOT).parts)
        text = path.read_text(encoding="utf-8")
        ups = [int(m.group(1)) for m in PARENTS_INDEX.finditer(text)]
        ups += [m.group(1).count(".parent") - 1 for m in PARENT_CHAIN.finditer(text)]
        if any(k >= depth for k in ups):
            found.append(str(path.relative_to(ROOT)))
    assert not found, f"these reach above the repository root: {found}"


def test_demo_data_is_rebuilt_from_the_bundled_source(tmp_path: Path) -> None:
    """``scripts/make_demo_data.py`` turns the bundled UCI file into ``fedsilo/data`` exactly."""
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_demo_data.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    for built in sorted(tmp_path.glob("demo_*.csv.gz")):
        assert built.read_bytes() == (ROOT / "fedsilo" / "data" / built.name).read_bytes()
    assert len(list(tmp_path.glob("demo_*.csv.gz"))) == 3
