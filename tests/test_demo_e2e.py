"""`fedsilo demo`, run as a user runs it: silos in processes of their own, results on disk, the
job file rerunning while `--serve` keeps the silos up, and no process left behind however the
demo ends (Ctrl-C, SIGTERM, a silo that dies)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import free_port

from fedsilo.cli.launch import SiloLaunch, launch_silos
from fedsilo.coordinator.store import JobStore
from fedsilo.errors import SiloUnavailable

pytestmark = pytest.mark.e2e

CLI = [sys.executable, "-m", "fedsilo.cli.main"]


def _processes_mentioning(folder: Path) -> list[int]:
    """Pids of live processes whose command line names ``folder`` (a demo's silos do)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().split(") ", 1)[1][0]
        except (OSError, IndexError):
            continue
        if str(folder) in cmdline and "silo serve" in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def _wait_for(path: Path, needle: str, proc: subprocess.Popen[bytes], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = path.read_text(errors="replace") if path.exists() else ""
        if needle in out:
            return out
        assert proc.poll() is None, f"exited {proc.returncode}:\n{out[-4000:]}"
        time.sleep(0.5)
    raise AssertionError(f"no {needle!r} within {timeout} s:\n{out[-4000:]}")


def _start_demo(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """``fedsilo demo ARGS --workdir tmp/demo``, its output going to tmp/demo.out."""
    work, out = tmp_path / "demo", tmp_path / "demo.out"
    with out.open("wb") as fh:
        proc = subprocess.Popen(
            [*CLI, "demo", *args, "--workdir", str(work)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "200"},
        )
    return proc, work, out


def _gone(folder: Path, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while _processes_mentioning(folder) and time.monotonic() < deadline:
        time.sleep(0.2)
    return not _processes_mentioning(folder)


@pytest.mark.slow
@pytest.mark.timeout(3000)
def test_demo_serves_reruns_and_stops_clean(tmp_path: Path) -> None:
    demo, work, out = _start_demo(tmp_path, "--serve")
    try:
        text = _wait_for(out, "Ctrl-C stops the silos", demo, timeout=2400)
        assert "succeeded" in text
        assert len(_processes_mentioning(work)) == 3  # one process per silo
        summary = json.loads((work / "summary.json").read_text())
        evaluations = {v["model"]: v for k, v in summary.items() if k.endswith(":evaluate")}
        assert len(evaluations) == 2
        for ev in evaluations.values():
            assert ev["metrics"]["auc"] > 0.68
            assert ev["metrics"]["auc"] > ev["metrics"]["label_holder_only_auc"]
            report = Path(ev["report"])
            assert report.is_file() and report.with_suffix(".json").is_file()
            assert report.parent == work / "reports"
        with sqlite3.connect(work / "bank.db") as db:
            (scored,) = db.execute("SELECT COUNT(*) FROM risk_scores").fetchone()
        assert scored == summary[next(k for k in summary if k.endswith(":psi"))]["count"] > 20000
        # the printed rerun command works: same job file, while the demo's silos serve
        rerun = subprocess.run(
            [*CLI, "run", str(work / "job.toml")], capture_output=True, text=True, timeout=2400
        )
        assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
        store = JobStore(f"sqlite:///{work / 'coordinator.db'}")
        jobs = store.list_jobs()
        assert [j.state for j in jobs] == ["succeeded", "succeeded"]
        assert len({m.name for m in store.list_models()}) == 2 and len(store.list_models()) == 4
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=60) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert _gone(work), "silo processes outlived the demo"


def test_demo_stops_its_silos_on_sigterm(tmp_path: Path) -> None:
    """SIGTERM while the job runs: the demo exits non-zero at once, its silos with it."""
    demo, work, out = _start_demo(tmp_path)
    try:
        _wait_for(out, "step 1/7", demo, timeout=600)
        assert len(_processes_mentioning(work)) == 3
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=60) == 130
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert _gone(work), "silo processes outlived the demo"


def _tiny_silo(root: Path, party: str) -> SiloLaunch:
    csv = root / f"{party}.csv"
    csv.write_text("id,x\n" + "".join(f"{i},{i % 7}\n" for i in range(50)))
    config = root / f"{party}.toml"
    config.write_text(
        f'party = "{party}"\nlisten = "127.0.0.1:{free_port()}"\n'
        f'database = "sqlite:///{party}.db"\n[tls]\ninsecure_plaintext = true\n'
        '[datasets.main]\ntable = "t"\nid_column = "id"\nfeatures = ["x"]\n'
        '[policy]\nprotocols = ["psi"]\nroles = ["passive"]\n'
    )
    return SiloLaunch(party, config, data=csv)


def test_launcher_names_a_dead_silo_and_stops_the_rest(tmp_path: Path) -> None:
    specs = [_tiny_silo(tmp_path, p) for p in ("alpha", "beta")]
    with pytest.raises(SiloUnavailable, match="silo 'alpha' exited"):  # noqa: PT012
        with launch_silos(specs, logs=tmp_path / "logs") as silos:
            assert set(silos.addresses) == {"alpha", "beta"}
            assert "serving on" in (tmp_path / "logs" / "beta.log").read_text()
            silos.procs["alpha"].kill()
            silos.procs["alpha"].wait()
            silos.check_alive()
    assert all(p.poll() is not None for p in silos.procs.values())
    assert _gone(tmp_path)


def test_launcher_refuses_a_config_of_another_party(tmp_path: Path) -> None:
    spec = _tiny_silo(tmp_path, "alpha")
    with pytest.raises(Exception, match="party 'alpha', expected 'beta'"):
        with launch_silos([SiloLaunch("beta", spec.config)], logs=tmp_path / "logs"):
            pass
