"""Every optional extra installs beside fedsilo and leaves it importable.

The generated protobuf code refuses a runtime older than the protoc that wrote it (its "gencode"
version). An extra that drags in an older protobuf (openmined-psi 2.0.6 pins 6.30.2) breaks
``import fedsilo.protos``; such references run in their own environment instead
(``bench/reference/README.md``).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
#: libraries that must never be an extra: they pin a protobuf the generated code refuses
ISOLATED_REFERENCES = {"openmined-psi"}


def gencode_version() -> Version:
    """The protobuf version ``fedsilo_pb2.py`` checks at import (its ValidateProtobufRuntimeVersion
    call), read from the file rather than by importing it."""
    tree = ast.parse((ROOT / "fedsilo" / "protos" / "fedsilo_pb2.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == (
            "ValidateProtobufRuntimeVersion"
        ):
            major, minor, patch = (ast.literal_eval(arg) for arg in node.args[1:4])
            return Version(f"{major}.{minor}.{patch}")
    raise AssertionError("fedsilo_pb2.py has no runtime version check")


def extras() -> dict[str, list[Requirement]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {
        name: [Requirement(r) for r in reqs]
        for name, reqs in project["optional-dependencies"].items()
    }


def admits_gencode(req: Requirement, gencode: Version) -> bool:
    """Whether ``req`` allows the gencode version or a later one of the same or next major."""
    later = [
        gencode,
        Version(f"{gencode.major}.{gencode.minor + 1}"),
        Version(f"{gencode.major + 1}.0"),
    ]
    return any(req.specifier.contains(v, prereleases=False) for v in later)


def test_gencode_version_is_read_from_the_generated_file() -> None:
    assert gencode_version() >= Version("7.0")


@pytest.mark.parametrize("extra", sorted(extras()))
def test_no_extra_pins_protobuf_below_the_generated_code(extra: str) -> None:
    gencode = gencode_version()
    for req in extras()[extra]:
        assert req.name not in ISOLATED_REFERENCES, f"{req} belongs in bench/reference/"
        if req.name == "protobuf":
            assert admits_gencode(req, gencode), f"[{extra}] {req} refuses protobuf {gencode}"


def test_the_check_refuses_an_old_pin() -> None:
    gencode = gencode_version()
    assert not admits_gencode(Requirement("protobuf==6.30.2"), gencode)
    assert admits_gencode(Requirement("protobuf>=7.35"), gencode)


def _dry_run(requirements: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--report",
            "-",
            *requirements,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.parametrize("extra", sorted(extras()))
def test_each_extra_resolves_with_the_protobuf_fedsilo_needs(extra: str) -> None:
    """pip resolves the extra's whole dependency tree together with ``protobuf>=gencode``: a
    transitive pin (not visible in pyproject.toml) fails here as a resolution conflict."""
    wanted = [str(r) for r in extras()[extra]] + [f"protobuf>={gencode_version()}"]
    run = _dry_run(wanted)
    if run.returncode != 0 and "ResolutionImpossible" not in run.stderr:
        pytest.skip(f"pip could not reach an index: {run.stderr.strip()[-300:]}")
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout)
    versions = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in report["install"]}
    assert Version(versions["protobuf"]) >= gencode_version()


@pytest.mark.slow
def test_the_dry_run_sees_a_transitive_pin() -> None:
    """The resolution test is not vacuous: openmined-psi 2.0.6's pin is a conflict."""
    run = _dry_run(["openmined-psi==2.0.6", f"protobuf>={gencode_version()}"])
    if run.returncode != 0 and "ResolutionImpossible" not in run.stderr:
        pytest.skip(f"pip could not reach an index: {run.stderr.strip()[-300:]}")
    assert run.returncode != 0
