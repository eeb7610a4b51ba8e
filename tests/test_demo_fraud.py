"""`fedsilo fraudsim` and `fedsilo demo fraud` end to end, as a user runs them (subprocesses).

The demo runs with real 2048-bit Paillier keys (silos accept nothing smaller), on a small
simulation and fewer trees than the default so that it takes well under a minute.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from test_cli import fedsilo

from fedsilo.fraudsim import ACQUIRER_FEATURES, ISSUER_FEATURES, ISSUER_LABEL, TX_ID

pytestmark = pytest.mark.e2e


def test_fraudsim_writes_the_two_parties_csvs_same_seed_same_bytes(tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        out = fedsilo("fraudsim", "--out", name, "--rows", "3000", "--seed", "5", cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert "fraud" in out.stdout and "compromised terminal" in out.stdout
        runs.append({p.name: p.read_bytes() for p in (tmp_path / name).iterdir()})
    assert sorted(runs[0]) == ["acquirer.csv", "issuer.csv"] and runs[0] == runs[1]
    header = runs[0]["issuer.csv"].split(b"\n", 1)[0].decode()
    assert header.split(",") == [TX_ID, *ISSUER_FEATURES, ISSUER_LABEL]
    header = runs[0]["acquirer.csv"].split(b"\n", 1)[0].decode()
    assert header.split(",") == [TX_ID, *ACQUIRER_FEATURES]


def test_bad_sizes_are_one_line_errors(tmp_path: Path) -> None:
    out = fedsilo("fraudsim", "--out", "x", "--rows", "10", cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0
    assert "at least 1000 rows" in out.stderr and not (tmp_path / "x").exists()
    (tmp_path / "file").write_text("")
    out = fedsilo("fraudsim", "--out", "file/x", "--rows", "2000", cwd=tmp_path)
    assert out.returncode == 3 and "cannot create the folder" in out.stderr
    assert out.stderr.strip().count("\n") == 0
    out = fedsilo("demo", "fraud", "--trees", "0", cwd=tmp_path)
    assert out.returncode == 2 and "--trees 0" in out.stderr
    out = fedsilo("demo", "fraud", "--rows", "5", cwd=tmp_path)
    assert out.returncode == 2 and "at least 1000 rows" in out.stderr
    assert not (tmp_path / "fedsilo-demo-fraud").exists()


@pytest.mark.slow
def test_demo_fraud_end_to_end(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    args = ("demo", "fraud", "--workdir", str(work), "--rows", "10000", "--seed", "2")
    out = fedsilo(*args, "--trees", "20", cwd=tmp_path, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "succeeded" in out.stdout
    assert "test AUC" in out.stdout and "precision, top 1% reviewed" in out.stdout
    assert "issuer alone" in out.stdout

    found = json.loads((work / "summary.json").read_text())["fraud_demo"]
    # the acquirer's terminal risk is what catches compromised terminals: federation pays
    assert found["auc"] > found["baseline_auc"] + 0.05
    assert found["precision"] > found["baseline_precision"]
    assert f"{found['auc']:.4f}" in out.stdout and f"{found['baseline_auc']:.4f}" in out.stdout

    # the label stays at the issuer; the scores land there, for every transaction joined
    issuer = create_engine(f"sqlite:///{work / 'issuer.db'}")
    acquirer = create_engine(f"sqlite:///{work / 'acquirer.db'}")
    try:
        acq_columns = {c["name"] for c in inspect(acquirer).get_columns("terminal_history")}
        assert ISSUER_LABEL not in acq_columns and acq_columns == {TX_ID, *ACQUIRER_FEATURES}
        with issuer.connect() as conn:
            transactions = conn.execute(text("SELECT COUNT(*) FROM card_transactions")).scalar()
            scored = conn.execute(text("SELECT COUNT(*) FROM fraud_scores")).scalar()
        assert scored == transactions
    finally:
        issuer.dispose()
        acquirer.dispose()
