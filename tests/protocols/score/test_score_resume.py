"""Batch scoring survives a real crash of the label holder: SIGKILL mid-job, restart, rerun.

The silos run as subprocesses (``fedsilo silo serve``) so the label holder can be killed for
real, not stopped politely. A vertical SecureBoost model (bank holds labels, bureau the other
columns, 2048-bit keys and three trees to keep the test short) scores the
whole alignment twice: once uninterrupted into ``ref``, once into ``risk`` with the bank killed
after a few chunks and the same scoring step rerun after a restart. The tables must agree: same
ids, one row each, identical scores; the killed run leaves only whole chunks; the rerun resumes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from bundled_data import data_file
from sqlalchemy import create_engine, text
from support import Consortium, SiloSpec

from fedsilo.coordinator.client import SiloClient
from fedsilo.coordinator.config import CoordinatorConfig, load_coordinator_config
from fedsilo.coordinator.connect import connect_silos
from fedsilo.coordinator.orchestrator import run_job
from fedsilo.coordinator.store import JobStore
from fedsilo.errors import JobError
from fedsilo.progress import ProgressTask

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

GUEST = [f"x{i}" for i in range(10)]
HOST = [f"x{i}" for i in range(20)]
#: default policies: a silo config may only tighten them, so real 2048-bit keys, few trees
SGB = {"n_estimators": 3, "max_depth": 3, "max_bin": 16, "min_child_weight": 3.0}
CHUNK = 40
KILL_AFTER_CHUNKS = 3
START_TIMEOUT_S = 60.0


class SiloProcess:
    """One ``fedsilo silo serve`` subprocess in its own process group (so SIGKILL takes its
    worker pool with it)."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        """Start and wait for the 'serving on' line, so the port is listening when we return."""
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fedsilo.cli.main",
                "silo",
                "serve",
                "--config",
                str(self.config),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if "serving on" in line:
                threading.Thread(target=self._drain, daemon=True).start()
                return
            if not line and self.proc.poll() is not None:
                break
        self.kill()
        raise RuntimeError(f"silo {self.config.name} did not start")

    def _drain(self) -> None:
        """Keep reading its output so a chatty silo never blocks on a full pipe."""
        if self.proc is not None and self.proc.stdout is not None:
            for _line in self.proc.stdout:
                pass

    def kill(self) -> None:
        """SIGKILL the silo's process group (only processes this test started) and reap it."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


class KillAfter:
    """A progress reporter that SIGKILLs a silo once ``n`` chunks are scored, from a thread a
    moment later, so the kill lands while the next chunk is in flight rather than between."""

    def __init__(self, silo: SiloProcess, n: int) -> None:
        self.silo, self.n, self.seen, self.killed = silo, n, 0, threading.Event()

    def task(self, description: str, total: float | None = None) -> ProgressTask:
        return self

    def note(self, message: str) -> None:
        return None

    def advance(self, amount: float = 1) -> None:
        self.seen += 1
        if self.seen == self.n:
            threading.Timer(0.01, self._kill).start()

    def finish(self) -> None:
        return None

    def _kill(self) -> None:
        self.silo.kill()
        self.killed.set()


@pytest.fixture
def consortium(tmp_path: Path) -> Iterator[tuple[Consortium, dict[str, SiloProcess]]]:
    c = Consortium(tmp_path)
    c.add_silo(SiloSpec("bank", data_file("breast_hetero_guest"), GUEST, label="y"))
    c.add_silo(SiloSpec("bureau", data_file("breast_hetero_host"), HOST))
    silos = {p: SiloProcess(path) for p, path in c.configs.items()}
    try:
        for silo in silos.values():
            silo.start()
        yield c, silos
    finally:
        for silo in silos.values():
            silo.kill()


def _coordinator(c: Consortium) -> CoordinatorConfig:
    """A coordinator config for the subprocess silos, at the addresses their configs listen on."""
    listen = {
        p: next(
            line.split('"')[1]
            for line in path.read_text().splitlines()
            if line.startswith("listen")
        )
        for p, path in c.configs.items()
    }
    path = c.root / "coordinator.toml"
    silos = "".join(f'[silos.{p}]\naddress = "{a}"\n' for p, a in listen.items())
    path.write_text(
        f'name = "coordinator"\ndatabase = "sqlite:///{c.root / "coord.db"}"\n'
        f"[tls]\ninsecure_plaintext = true\n{silos}"
    )
    return load_coordinator_config(path)


def _clients(c: Consortium) -> dict[str, SiloClient]:
    """Fresh clients, waiting until every channel is connected: gRPC shares subchannels between
    channels to one address, and the one to the killed silo may still be in reconnect backoff."""
    clients = connect_silos(_coordinator(c))
    for client in clients.values():
        grpc.channel_ready_future(client.channel).result(timeout=START_TIMEOUT_S)
    return clients


def _scores(c: Consortium, table: str) -> list[tuple[str, float]]:
    """Every ``(id, score)`` row of a score table in the bank's database (duplicates kept)."""
    engine = create_engine(f"sqlite:///{c.root / 'bank.db'}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(f"SELECT id, score FROM {table}"))
            return [(str(i), float(s)) for i, s in rows]
    finally:
        engine.dispose()


def test_scoring_killed_midway_resumes_to_the_same_table(consortium) -> None:
    c, silos = consortium
    parties = {"bank": "active", "bureau": "passive"}
    store = JobStore(_coordinator(c).database_url)
    trained = run_job(
        c.job(
            parties,
            [{"kind": "psi", "alignment": "all"}, {"kind": "secureboost", **SGB}],
            name="train",
        ),
        clients=_clients(c),
        store=store,
    )
    model = trained.result["2:secureboost"]["model"]
    score = {"kind": "score", "model": model, "alignment": "all", "chunk_rows": CHUNK}

    ref = run_job(
        c.job(parties, [{**score, "table": "ref"}], name="ref"), clients=_clients(c), store=store
    )
    reference = dict(_scores(c, "ref"))
    assert ref.result["1:score"]["written"] == ref.result["1:score"]["rows"] == len(reference)
    assert len(reference) > 5 * CHUNK

    # the crash: SIGKILL the label holder's whole process while chunks are in flight
    killer = KillAfter(silos["bank"], KILL_AFTER_CHUNKS)
    with pytest.raises(JobError, match="bank"):
        run_job(
            c.job(parties, [{**score, "table": "risk"}], name="crash"),
            clients=_clients(c),
            store=store,
            progress=killer,
        )
    assert killer.killed.wait(30)
    (failed,) = [j for j in store.list_jobs() if j.name == "crash"]
    assert failed.state == "failed" and "bank" in failed.reason
    partial = _scores(c, "risk")
    assert len(partial) % CHUNK == 0, "a chunk was written partially"
    assert KILL_AFTER_CHUNKS * CHUNK <= len(partial) < len(reference)
    assert len({i for i, _ in partial}) == len(partial)

    # restart the same silo on the same database and rerun the same scoring step
    silos["bank"].start()
    rerun = run_job(
        c.job(parties, [{**score, "table": "risk"}], name="rerun"), clients=_clients(c), store=store
    )
    result = rerun.result["1:score"]
    assert result["already_scored"] == len(partial) > 0
    assert result["written"] == len(reference) - len(partial)

    resumed = _scores(c, "risk")
    assert len(resumed) == len({i for i, _ in resumed}), "an id was scored twice"
    assert dict(resumed) == reference  # same ids, identical scores (exact equality)
