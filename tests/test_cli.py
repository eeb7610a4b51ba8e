"""The command line: help, one-line errors with non-zero exits, nothing half-written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from bundled_data import data_file
from sqlalchemy import create_engine, inspect, text
from support import Consortium, SiloSpec

pytestmark = pytest.mark.e2e

GUEST = [f"x{i}" for i in range(10)]


def fedsilo(
    *args: str, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fedsilo.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )


def test_help_lists_every_command() -> None:
    out = fedsilo("--help")
    assert out.returncode == 0
    for command in ("demo", "silo", "coordinator", "run", "jobs", "models", "certs", "audit"):
        assert command in out.stdout


def _bad_silo(tmp_path: Path, mutate: str) -> tuple[Path, str]:
    c = Consortium(tmp_path)
    config = c.add_silo(SiloSpec("bank", data_file("breast_hetero_guest"), GUEST, label="y"))
    db_url = f"sqlite:///{tmp_path / 'bank.db'}"
    engine = create_engine(db_url)
    with engine.begin() as conn:  # drop the loader's primary key so any corruption is possible
        conn.execute(text("CREATE TABLE loose AS SELECT * FROM bank_data"))
        conn.execute(text("DROP TABLE bank_data"))
        conn.execute(text("ALTER TABLE loose RENAME TO bank_data"))
        conn.execute(text(mutate))
    engine.dispose()
    return config, db_url


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        ("ALTER TABLE bank_data RENAME COLUMN x3 TO x3_old", "column 'x3'"),
        (
            "UPDATE bank_data SET x1 = 'abc' WHERE id = (SELECT MIN(id) FROM bank_data)",
            "not numeric",
        ),
        (
            "UPDATE bank_data SET id = (SELECT MAX(id) FROM bank_data) "
            "WHERE id = (SELECT MIN(id) FROM bank_data)",
            "duplicate",
        ),
        ("UPDATE bank_data SET id = NULL WHERE id = (SELECT MIN(id) FROM bank_data)", "NULL"),
        ("UPDATE bank_data SET y = 2 WHERE id = (SELECT MIN(id) FROM bank_data)", "binary"),
        ("ALTER TABLE bank_data RENAME TO other", "bank_data"),
    ],
)
def test_bad_table_is_one_line_and_writes_nothing(tmp_path: Path, mutate: str, needle: str) -> None:
    config, db_url = _bad_silo(tmp_path, mutate)
    out = fedsilo("silo", "check", "--config", str(config))
    assert out.returncode == 3, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fedsilo: error: bank.toml:"), out.stderr
    assert needle.lower() in lines[0].lower()
    engine = create_engine(db_url)
    assert not [t for t in inspect(engine).get_table_names() if t.startswith("fedsilo_")]
    engine.dispose()


def test_bad_config_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "silo.toml"
    path.write_text(
        'party = "x"\nlisten = "127.0.0.1:1"\ndatabase = "sqlite:///x.db"\n'
        "[tls]\ninsecure_plaintext = true\n[policy]\nmin_intersecton = 5\n"
    )
    out = fedsilo("silo", "serve", "--config", str(path))
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "min_intersecton" in out.stderr
    assert not (tmp_path / "x.db").exists()


def test_missing_config_file(tmp_path: Path) -> None:
    out = fedsilo("silo", "check", "--config", str(tmp_path / "nope.toml"))
    assert out.returncode == 2 and "not found" in out.stderr and "Traceback" not in out.stderr


def test_run_with_unknown_step_kind(tmp_path: Path) -> None:
    (tmp_path / "coordinator.toml").write_text(
        '[tls]\ninsecure_plaintext = true\n[silos.a]\naddress = "127.0.0.1:1"\n'
    )
    (tmp_path / "job.toml").write_text(
        'coordinator = "coordinator.toml"\n[parties.a]\ndataset = "d"\nrole = "active"\n'
        '[[steps]]\nkind = "teleport"\n'
    )
    out = fedsilo("run", str(tmp_path / "job.toml"))
    assert out.returncode == 2 and "unknown step kind 'teleport'" in out.stderr


def test_silo_check_prints_datasets(tmp_path: Path) -> None:
    c = Consortium(tmp_path)
    config = c.add_silo(SiloSpec("bank", data_file("breast_hetero_guest"), GUEST, label="y"))
    out = fedsilo("silo", "check", "--config", str(config))
    assert out.returncode == 0 and "569 rows" in out.stdout


def test_audit_prints_entries_summary_and_verifies(tmp_path: Path) -> None:
    from fedsilo.coordinator.orchestrator import run_job

    c = Consortium(tmp_path)
    config = c.add_silo(SiloSpec("bank", data_file("breast_hetero_guest"), GUEST, label="y"))
    c.add_silo(SiloSpec("bureau", data_file("breast_hetero_host"), [f"x{i}" for i in range(20)]))
    c.start_all()
    try:
        spec = c.job({"bank": "active", "bureau": "passive"}, [{"kind": "psi", "alignment": "a"}])
        assert run_job(spec, clients=c.clients(), store=c.store()).state == "succeeded"
    finally:
        c.stop_all()
    full = fedsilo("audit", "--silo", str(config))
    assert full.returncode == 0 and "psi.alignment" in full.stdout and "reveals:" in full.stdout
    summary = fedsilo("audit", "--silo", str(config), "--summary")
    assert summary.returncode == 0 and "what each kind reveals" in summary.stdout
    verify = fedsilo("audit", "verify", "--silo", str(config))
    assert verify.returncode == 0 and "intact" in verify.stdout
    engine = create_engine(f"sqlite:///{tmp_path / 'bank.db'}")
    with engine.begin() as conn:
        conn.execute(text("UPDATE fedsilo_ledger SET nbytes = nbytes + 1 WHERE seq = 2"))
    engine.dispose()
    tampered = fedsilo("audit", "verify", "--silo", str(config))
    assert tampered.returncode != 0 and "tampered at entry 2" in tampered.stderr
