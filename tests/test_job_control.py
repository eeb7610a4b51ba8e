"""Job control over real gRPC under mTLS: cancelling a running SecureBoost job, following a job's
log until it ends, and progress streamed from a coordinator service to ``run --coordinator``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from bundled_data import data_file
from support import Consortium, SiloSpec, free_port, run_cli, wait_for

from fedsilo.coordinator.config import load_coordinator_config
from fedsilo.coordinator.orchestrator import run_job
from fedsilo.coordinator.server import serve_coordinator
from fedsilo.coordinator.store import JobStore
from fedsilo.crypto import tls
from fedsilo.errors import JobCancelled
from fedsilo.protos import fedsilo_pb2 as pb
from fedsilo.protos import fedsilo_pb2_grpc as pb_grpc

pytestmark = pytest.mark.e2e

GUEST = [f"x{i}" for i in range(10)]
HOST = [f"x{i}" for i in range(20)]
#: default keys (2048-bit Paillier): long enough a job to cancel in the middle of
SGB = {"kind": "secureboost", "n_estimators": 4, "max_depth": 3, "max_bin": 16}
PARTIES = {"bank": "active", "bureau": "passive", "telco": "passive"}


@pytest.fixture
def consortium(tmp_path: Path) -> Iterator[Consortium]:
    c = Consortium(tmp_path, tls=True)
    c.add_silo(SiloSpec("bank", data_file("breast_hetero_guest"), GUEST, label="y"))
    c.add_silo(SiloSpec("bureau", data_file("breast_hetero_host"), HOST[:10]))
    c.add_silo(SiloSpec("telco", data_file("breast_hetero_host"), HOST[10:]))
    c.start_all()
    yield c
    c.stop_all()


def _task(store: JobStore, job_id: str, prefix: str) -> dict[str, Any] | None:
    tasks = store.progress(job_id).get("tasks", [])
    return next((t for t in tasks if str(t["description"]).startswith(prefix)), None)


def _in_background(fn: Callable[[], Any]) -> dict[str, Any]:
    """Run ``fn`` in a thread; the dict gets its 'result' or 'error', when it 'ended' and the
    'thread'."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = fn()
        except BaseException as err:
            box["error"] = err
        box["ended"] = time.monotonic()

    box["thread"] = threading.Thread(target=run, daemon=True)
    box["thread"].start()
    return box


def test_cancel_a_running_secureboost_job(consortium: Consortium) -> None:
    c = consortium
    store = c.store()
    config = c.root / "coordinator.toml"  # written by c.store()
    spec = c.job(PARTIES, [{"kind": "psi", "alignment": "b", "replace": True}, SGB], name="sgb")
    job_id = store.create_job(spec.name, spec.to_wire(""))
    box = _in_background(lambda: run_job(spec, clients=c.clients(), store=store, job_id=job_id))
    wait_for("SecureBoost to start", lambda: _task(store, job_id, "SecureBoost") is not None)

    cli = subprocess.Popen(
        [sys.executable, "-m", "fedsilo.cli.main", "jobs", "cancel", job_id]
        + ["--config", str(config), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # timed from the request in the store (not from the CLI's start: an interpreter loading
    # grpc on a loaded machine is not the cancellation) to the job's end
    wait_for("the cancel request", lambda: store.cancel_requested(job_id) or "ended" in box)
    requested = time.monotonic()
    box["thread"].join(timeout=30)
    assert box["ended"] - requested < 10, f"cancel took {box['ended'] - requested:.1f} s"
    assert isinstance(box.get("error"), JobCancelled)
    stdout, stderr = cli.communicate(timeout=60)
    assert cli.returncode == 0, stderr
    doc = json.loads(stdout)
    assert doc["job_id"] == job_id and doc["cancel_requested"] is True
    assert doc["state"] == "cancelled" and doc["exit_code"] == 12

    rec = store.get_job(job_id)
    assert rec.state == "cancelled" and rec.result["error"] == "JobCancelled"
    assert "3:secureboost" not in rec.result  # the step did not complete
    assert store.list_models() == []  # nothing registered
    trees = _task(store, job_id, "SecureBoost")
    assert trees is not None and trees["completed"] < SGB["n_estimators"]
    for party, node in c.nodes.items():
        assert node.ctx.sessions.find(job_id) is None, party  # closed at every silo
        closes = [e for e in node.ctx.ledger.entries(job_id) if e.kind == "job.closed"]
        assert len(closes) == 1 and "cancelled" in closes[0].reveals, party
    messages = [m for _at, m in store.events(job_id)]
    assert "cancel requested" in messages and any(m.startswith("cancelled:") for m in messages)

    again = run_job(spec, clients=c.clients(), store=store)  # the same job, run again
    assert again.state == "succeeded"
    assert again.result["2:secureboost"]["trees"] == SGB["n_estimators"]
    assert [m.job_id for m in store.list_models()] == [again.job_id]
    for node in c.nodes.values():
        assert node.ctx.sessions.find(again.job_id) is None


def test_a_cancelled_scoring_job_leaves_no_partial_score_table(consortium: Consortium) -> None:
    c = consortium
    store = c.store()
    config = c.root / "coordinator.toml"
    small = {**SGB, "n_estimators": 1, "max_depth": 2}
    trained = run_job(
        c.job(PARTIES, [{"kind": "psi", "alignment": "s"}, small], name="m"),
        clients=c.clients(),
        store=store,
    )
    model = trained.result["2:secureboost"]["model"]
    score = {"kind": "score", "model": model, "alignment": "s", "table": "risk", "chunk_rows": 8}
    spec = c.job(PARTIES, [score], name="scoring")
    job_id = store.create_job(spec.name, spec.to_wire(""))
    box = _in_background(lambda: run_job(spec, clients=c.clients(), store=store, job_id=job_id))

    def chunks_done() -> bool:
        task = _task(store, job_id, "scoring")
        return task is not None and task["completed"] >= 3

    wait_for("a few chunks to be scored", chunks_done)
    out = run_cli("jobs", "cancel", job_id, "--config", str(config))
    assert out.returncode == 0 and out.stdout.strip() == f"job {job_id}: cancelled", out.stderr
    box["thread"].join(timeout=30)
    assert isinstance(box.get("error"), JobCancelled)
    task = _task(store, job_id, "scoring")
    assert task is not None and 3 <= task["completed"] < task["total"]  # it was stopped midway
    bank = c.nodes["bank"].ctx.store
    assert not bank.score_table_exists("risk")  # rows it wrote deleted, the table it made dropped
    again = run_job(spec, clients=c.clients(), store=store)
    assert again.state == "succeeded" and again.result["1:score"]["written"] == 569
    assert bank.score_count("risk", model) == 569


def test_cancel_of_an_ended_job_changes_nothing(consortium: Consortium) -> None:
    c = consortium
    store = c.store()
    spec = c.job(PARTIES, [{"kind": "noop"}], name="done")
    rec = run_job(spec, clients=c.clients(), store=store)
    out = run_cli("jobs", "--json", "cancel", rec.job_id, "--config", str(c.root / "coord.toml"))
    assert out.returncode == 2  # no such config file: one line
    out = run_cli(
        "jobs", "--json", "cancel", rec.job_id, "--config", str(c.root / "coordinator.toml")
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["cancel_requested"] is False and doc["state"] == "succeeded"
    assert not store.cancel_requested(rec.job_id)


def test_logs_follow_streams_until_the_job_ends(consortium: Consortium) -> None:
    c = consortium
    store = c.store()
    config = c.root / "coordinator.toml"
    spec = c.job(PARTIES, [{"kind": "psi", "alignment": "f", "replace": True}, SGB], name="follow")
    job_id = store.create_job(spec.name, spec.to_wire(""))
    box = _in_background(lambda: run_job(spec, clients=c.clients(), store=store, job_id=job_id))
    follow = subprocess.Popen(
        [sys.executable, "-m", "fedsilo.cli.main", "jobs", "logs", job_id, "--follow"]
        + ["--config", str(config), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    box["thread"].join(timeout=600)
    ended = time.monotonic()
    assert box.get("result") is not None and box["result"].state == "succeeded"
    stdout, stderr = follow.communicate(timeout=60)
    assert time.monotonic() - ended < 15  # it stopped once the job ended, by itself
    assert follow.returncode == 0, stderr
    updates = [json.loads(line) for line in stdout.splitlines()]
    assert "status" in updates[-1] and all("status" not in u for u in updates[:-1])
    final = updates[-1]["status"]
    assert final["job_id"] == job_id and final["state"] == "succeeded" and final["exit_code"] == 0
    events = [u["event"] for u in updates if "event" in u]
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    assert [e["message"] for e in events] == [m for _at, m in store.events(job_id)]
    assert events[-1]["message"].startswith("ledger heads kept")
    progress = [u["progress"] for u in updates if "progress" in u]
    described = {t["description"] for p in progress for t in p["tasks"]}
    assert {"psi: ids hashed and blinded", "psi: match", "SecureBoost trees"} <= described
    last = {t["description"]: t for t in progress[-1]["tasks"]}
    psi = last["psi: ids hashed and blinded"]
    assert psi["finished"] and psi["completed"] == psi["total"] == 569 * 3
    assert last["SecureBoost trees"]["completed"] == SGB["n_estimators"]


def _coordinator_toml(c: Consortium, port: int) -> Path:
    path = c.root / "coordinator.toml"
    c.coordinator_config()
    text = path.read_text().replace(
        'name = "coordinator"\n', f'name = "coordinator"\nlisten = "127.0.0.1:{port}"\n', 1
    )
    path.write_text(text)
    return path


def _job_toml(c: Consortium, steps: str, name: str) -> Path:
    path = c.root / f"{name}.toml"
    parties = "".join(
        f'[parties.{p}]\ndataset = "main"\nrole = "{r}"\n' for p, r in PARTIES.items()
    )
    path.write_text(f'coordinator = "coordinator.toml"\nname = "{name}"\n{parties}{steps}')
    return path


def test_run_through_the_coordinator_streams_progress_and_cancel(consortium: Consortium) -> None:
    c = consortium
    port = free_port()
    config = load_coordinator_config(_coordinator_toml(c, port))
    server, _port, store = serve_coordinator(config)
    try:
        psi = '[[steps]]\nkind = "psi"\nalignment = "r"\nreplace = true\n'
        job = _job_toml(c, psi, "remote")
        out = run_cli("run", str(job), "--coordinator", f"127.0.0.1:{port}")
        assert out.returncode == 0, out.stderr
        assert "psi: ids hashed and blinded" in out.stderr  # progress, streamed
        assert "psi: intersection of 569 rows" in out.stderr  # events, streamed
        assert "succeeded" in out.stdout

        sgb = (
            psi
            + "[[steps]]\n"
            + "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in SGB.items())
        )
        job = _job_toml(c, sgb, "remote-sgb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "fedsilo.cli.main", "--json", "run", str(job)]
            + ["--coordinator", f"127.0.0.1:{port}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

        def running() -> str | None:
            jobs = [r for r in store.list_jobs() if r.name == "remote-sgb"]
            return jobs[0].job_id if jobs and _task(store, jobs[0].job_id, "SecureBoost") else None

        wait_for("the submitted job to train", lambda: running() is not None)
        job_id = running()
        assert job_id is not None
        tls_files = config.tls
        assert tls_files.ca and tls_files.cert and tls_files.key
        creds = tls.channel_credentials(ca=tls_files.ca, cert=tls_files.cert, key=tls_files.key)
        with grpc.secure_channel(
            f"127.0.0.1:{port}", creds, options=tls.identity_options("coordinator")
        ) as channel:
            status = pb_grpc.CoordinatorServiceStub(channel).CancelJob(
                pb.CancelJobRequest(job_id=job_id), timeout=10
            )
        assert status.job_id == job_id
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 12, stderr  # the job's outcome is the command's exit code
        doc = json.loads(stdout)
        assert doc["job_id"] == job_id and doc["state"] == "cancelled" and doc["exit_code"] == 12
        assert doc["result"]["error"] == "JobCancelled"
        for node in c.nodes.values():
            assert node.ctx.sessions.find(job_id) is None
    finally:
        server.stop(None)
