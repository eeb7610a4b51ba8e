"""`fedsilo fraudsim` and `fedsilo demo fraud` end to end, as a user runs them (subprocesses).

The demo runs with real 2048-bit Paillier keys (silos accept nothing smaller), on a small
simulation and fewer trees than the default so that it takes well under a minute, then serves
the model online (``--serve``: it stays up until SIGTERM, as until Ctrl-C at a terminal).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1.health_pb2 import HealthCheckRequest
from grpc_health.v1.health_pb2_grpc import HealthStub
from sqlalchemy import create_engine, inspect, text
from test_cli import fedsilo

from fedsilo.cli.demo_serving import MODEL_ID
from fedsilo.cli.health_cmd import silo_target
from fedsilo.cli.launch import launch_relay
from fedsilo.crypto import certs, tls
from fedsilo.errors import SiloUnavailable
from fedsilo.fraudsim import ACQUIRER_FEATURES, ISSUER_FEATURES, ISSUER_LABEL, TX_ID
from fedsilo.silo_node.config import load_silo_config

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


def test_relay_that_cannot_start_is_named_and_nothing_is_left(tmp_path: Path) -> None:
    certs.init_ca(tmp_path / "certs", name="test CA")
    certs.issue(tmp_path / "certs", "coordinator", role="coordinator")
    (tmp_path / "coordinator.toml").write_text(
        'name = "coordinator"\ndatabase = "sqlite:///coordinator.db"\n[tls]\n'
        'ca = "certs/ca.pem"\ncert = "certs/coordinator.pem"\nkey = "certs/coordinator.key"\n'
        '[silos.issuer]\naddress = "127.0.0.1:9"\n'
    )
    with pytest.raises(SiloUnavailable, match="relay for nope-v1 exited with code .*nope-v1"):
        with launch_relay("nope-v1", "serve-x", tmp_path / "coordinator.toml", logs=tmp_path):
            pytest.fail("the relay of a model nobody registered came up")
    assert "no model 'nope-v1'" in (tmp_path / "relay.log").read_text()
    assert not [c for c in _descendants(os.getpid()).values() if "nope-v1" in c]


def _descendants(pid: int) -> dict[int, str]:
    """pid -> command line of every live process below ``pid`` (Linux /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if stat[0] != "Z":
                parents[int(entry.name)] = int(stat[1])
    found, grew = {pid}, True
    while grew:
        grew = False
        for child, parent in parents.items():
            if parent in found and child not in found:
                found.add(child)
                grew = True
    out = {}
    for child in found - {pid}:
        try:
            out[child] = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_demo_fraud_end_to_end(tmp_path: Path) -> None:
    """Train, evaluate, score, then serve: online scores equal the batch scores; with --serve
    everything stays up for score-one until SIGTERM, and then no process is left behind."""
    work = tmp_path / "demo"
    argv = [sys.executable, "-m", "fedsilo.cli.main", "demo", "fraud", "--workdir", str(work)]
    argv += ["--rows", "10000", "--seed", "2", "--trees", "20", "--serve"]
    log = tmp_path / "demo.out"
    with log.open("w") as sink:
        proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 900
        while "Ctrl-C stops." not in log.read_text() and proc.poll() is None:
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.5)
        assert proc.poll() is None, log.read_text()[-2000:]
        children = _descendants(proc.pid)
        commands = " | ".join(children.values())
        # two silos and the relay, each its own process
        assert commands.count("silo serve") == 2 and f"serve {MODEL_ID}" in commands, commands

        # the line the demo prints works from a shell while it serves, and agrees with batch
        line = next(ln for ln in log.read_text().splitlines() if "fedsilo score-one" in ln)
        words = line.split()
        tried = subprocess.run(
            [sys.executable, "-m", "fedsilo.cli.main", *words[words.index("score-one") :]],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert tried.returncode == 0, tried.stderr
        answer = json.loads(tried.stdout)
        assert answer["results"][0]["contributed"] == ["issuer", "acquirer"]
        tried_id, tried_score = answer["results"][0]["id"], answer["results"][0]["score"]

        # the fraud engine's certificate (applications' CA) opens the endpoint, not the silos:
        # the same handshake with the acquirer's own certificate passes, with the engine's fails
        own = silo_target(load_silo_config(work / "acquirer.toml"))
        assert own.files is not None
        apps = work / "certs" / "apps"
        app = (own.files[0], apps / "fraud-engine.pem", apps / "fraud-engine.key")
        for (ca, cert, key), allowed in ((own.files, True), (app, False)):
            creds = grpc.ssl_channel_credentials(
                ca.read_bytes(), private_key=key.read_bytes(), certificate_chain=cert.read_bytes()
            )
            options = tls.identity_options(own.name)
            with grpc.secure_channel(own.address, creds, options=options) as channel:
                check = HealthStub(channel).Check
                if allowed:
                    assert check(HealthCheckRequest(service=""), timeout=10).status == 1
                else:
                    with pytest.raises(grpc.RpcError):
                        check(HealthCheckRequest(service=""), timeout=10)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    out = log.read_text()
    assert proc.returncode == 0, out[-2000:]
    left = [pid for pid in children if _alive(pid)]
    assert not left, f"left behind: {[children[p] for p in left]}"
    assert "stopping the relay and the silos" in out
    assert "succeeded" in out
    assert "test AUC" in out and "precision, top 1% reviewed" in out
    assert "issuer alone" in out

    # the serving phase: online == batch for every sampled held-out id, latencies printed
    online = json.loads((work / "summary.json").read_text())["online"]
    assert online["compared"] > 1000 and online["max_abs_diff"] == 0.0
    assert online["errors"] == [] and online["degraded"] == 0
    assert online["single"]["requests"] == 200 and online["burst"]["transactions"] == 2000
    assert f"max |online - batch| = 0 over {online['compared']} ids" in out
    for figure in (online["single"]["p50_ms"], online["single"]["p99_ms"]):
        assert f"{figure:.1f} ms" in out
    assert f"{online['burst']['tx_per_s']:.0f} tx/s" in out
    assert "curl --cacert" in out and f"/v1/models/{MODEL_ID}/score" in out

    found = json.loads((work / "summary.json").read_text())["fraud_demo"]
    # the acquirer's terminal risk is what catches compromised terminals: federation pays
    assert found["auc"] > found["baseline_auc"] + 0.05
    assert found["precision"] > found["baseline_precision"]
    assert f"{found['auc']:.4f}" in out and f"{found['baseline_auc']:.4f}" in out

    # the label stays at the issuer; the scores land there, for every transaction joined
    issuer = create_engine(f"sqlite:///{work / 'issuer.db'}")
    acquirer = create_engine(f"sqlite:///{work / 'acquirer.db'}")
    try:
        acq_columns = {c["name"] for c in inspect(acquirer).get_columns("terminal_history")}
        assert ISSUER_LABEL not in acq_columns and acq_columns == {TX_ID, *ACQUIRER_FEATURES}
        with issuer.connect() as conn:
            transactions = conn.execute(text("SELECT COUNT(*) FROM card_transactions")).scalar()
            scored = conn.execute(text("SELECT COUNT(*) FROM fraud_scores")).scalar()
            batch = conn.execute(
                text("SELECT score FROM fraud_scores WHERE id = :id"), {"id": tried_id}
            ).scalar()
        assert scored == transactions
        assert batch == tried_score  # score-one from the shell == the score step's score
    finally:
        issuer.dispose()
        acquirer.dispose()
