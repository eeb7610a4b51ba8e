"""Run a reference library in its own virtual environment (see README.md beside this file)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["reference_python", "run_json"]

BENCH = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent


def reference_python(name: str, requirements: list[str]) -> Path:
    """The interpreter of ``bench/.venv-<name>``, created with ``requirements`` on first use.

    A marker file records what was installed, so a changed requirement list rebuilds the
    environment instead of silently measuring an old version.
    """
    venv = BENCH / f".venv-{name}"
    python = venv / "bin" / "python"
    marker = venv / ".fedsilo-requirements"
    wanted = "\n".join(requirements)
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    print(f"creating {venv} with {', '.join(requirements)} (first use)", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *requirements], check=True)
    marker.write_text(wanted)
    return python


def run_json(python: Path, script: str, *args: str) -> dict[str, Any]:
    """Run ``script`` (a file beside this one) under ``python``; its last stdout line is JSON."""
    done = subprocess.run(
        [str(python), str(HERE / script), *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{script} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
