"""`fedsilo score --model ID` scores through PSI and the score step, and resumes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from bundled_data import data_file
from sqlalchemy import create_engine, text
from support import Consortium, SiloSpec

from fedsilo.coordinator.orchestrator import run_job

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_score_command_runs_psi_then_scores(tmp_path: Path) -> None:
    c = Consortium(tmp_path)
    c.add_silo(
        SiloSpec("bank", data_file("breast_hetero_guest"), [f"x{i}" for i in range(10)], label="y")
    )
    c.add_silo(SiloSpec("bureau", data_file("breast_hetero_host"), [f"x{i}" for i in range(20)]))
    c.start_all()
    try:
        spec = c.job(
            {"bank": "active", "bureau": "passive"},
            [{"kind": "psi", "alignment": "train"}, {"kind": "lr", "max_iter": 2}],
            name="cli",
        )
        trained = run_job(spec, clients=c.clients(), store=c.store())
        model = trained.result["2:lr"]["model"]
        config = tmp_path / "coordinator.toml"
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "fedsilo.cli.main",
                "score",
                "--model",
                model,
                "--config",
                str(config),
                "--table",
                "cli_scores",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr
        assert "succeeded" in out.stdout and '"written": 569' in out.stdout
        again = subprocess.run(
            [
                sys.executable,
                "-m",
                "fedsilo.cli.main",
                "score",
                "--model",
                model,
                "--config",
                str(config),
                "--table",
                "cli_scores",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert again.returncode == 0 and '"written": 0' in again.stdout  # nothing twice
        engine = create_engine(f"sqlite:///{tmp_path / 'bank.db'}")
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT COUNT(*), COUNT(DISTINCT id) FROM cli_scores")).one()
        engine.dispose()
        assert tuple(rows) == (569, 569)
    finally:
        c.stop_all()
