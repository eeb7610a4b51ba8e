"""The generated gRPC code is what scripts/gen_protos.py makes from the .proto today."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_generated_code_is_fresh() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_stale_code_is_detected(tmp_path: Path) -> None:
    for path in (ROOT / "fedsilo" / "protos").glob("fedsilo_pb2*.py*"):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    (tmp_path / "fedsilo_pb2.py").write_bytes(
        (tmp_path / "fedsilo_pb2.py").read_bytes() + b"\n# edited by hand\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "gen_protos.py"),
            "--check",
            "--target",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 1 and "stale" in result.stdout
