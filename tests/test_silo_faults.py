"""Faults at a silo: a passive silo SIGKILLed (or SIGSTOPped) mid-training, then restarted.

Every silo runs as a real subprocess (``fedsilo silo serve``, plaintext on loopback); the
coordinator runs ``run_job`` in a thread of this process. A vertical LR job (psi -> split -> lr)
is started, a passive silo is killed while the ``lr`` step runs, and the test checks that the job
ends ``failed`` within a bounded time with a reason naming that silo, that no job is left
``running``, and that the surviving silos' ledgers still verify. After a restart, a new run of
the job succeeds, and a resumed run (``resume=True``) starts at the training step without
redoing PSI or the split.

A stopped silo (SIGSTOP) keeps its TCP connection open and answers nothing; the coordinator's
keepalive pings (``GRPC_KEEPALIVE_TIME_S`` + ``GRPC_KEEPALIVE_TIMEOUT_S``) find it dead long
before ``STEP_DEADLINE_S``.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from support import PARTIES, Silos

from fedsilo import settings
from fedsilo.coordinator.config import JobSpec
from fedsilo.coordinator.orchestrator import run_job
from fedsilo.coordinator.store import JobRecord, JobStore
from fedsilo.errors import JobError

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

#: seconds within which a dead silo must turn into a failed job
BOUND_S = 30.0


def lr_job(s: Silos, epochs: int, alignment: str = "breast") -> JobSpec:
    """psi -> split -> lr: many small batches (tol 0), so training outlasts the kill."""
    return s.c.job(
        PARTIES,
        [
            {"kind": "psi", "alignment": alignment},
            {"kind": "split", "test_fraction": 0.2},
            {"kind": "lr", "batch_size": 128, "max_iter": epochs, "tol": 0.0},
        ],
        name="faults",
    )


@dataclass
class Background:
    """``run_job`` in a thread: its record or its error once it ends."""

    thread: threading.Thread
    outcome: list[JobRecord | BaseException]

    def join(self, timeout: float) -> JobRecord | BaseException | None:
        self.thread.join(timeout)
        return self.outcome[0] if self.outcome else None


def start_job(spec: JobSpec, s: Silos, store: JobStore, job_id: str) -> Background:
    outcome: list[JobRecord | BaseException] = []

    def work() -> None:
        try:
            outcome.append(run_job(spec, clients=s.clients(), store=store, job_id=job_id))
        except BaseException as err:  # noqa: BLE001 - handed to the test thread
            outcome.append(err)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return Background(thread, outcome)


def wait_for(what: str, check: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def training(store: JobStore, job_id: str) -> Callable[[], bool]:
    """True once the lr step has finished an epoch (the silos are mid-training)."""
    return lambda: any(m.startswith("lr epoch 0") for _at, m in store.events(job_id))


def fail_mid_training(s: Silos, store: JobStore, job_id: str, sig: signal.Signals) -> JobRecord:
    """Start the job, signal ``telco`` during training, and return the failed record."""
    job = start_job(lr_job(s, epochs=200), s, store, job_id)
    wait_for("training to start", training(store, job_id))
    s.signal("telco", sig)
    wait_for(
        f"the job to fail after {sig.name}",
        lambda: store.get_job(job_id).state != "running",
        timeout=BOUND_S,
    )
    # then run_job closes the sessions, a hung silo costing at most CLOSE_DEADLINE_S
    outcome = job.join(settings.CLOSE_DEADLINE_S + 10)
    assert isinstance(outcome, JobError), outcome
    record = store.get_job(job_id)
    assert record.state == "failed" and "telco" in record.reason, record
    assert not [j.job_id for j in store.list_jobs() if j.state in ("queued", "running")]
    for party in ("bank", "bureau"):
        s.verify_ledger(party)
    return record


def test_silo_killed_mid_training_fails_fast_then_a_new_run_succeeds(silos: Silos) -> None:
    store = silos.store()
    fail_mid_training(silos, store, "killed", signal.SIGKILL)
    assert silos.procs["telco"].wait(timeout=10) == -signal.SIGKILL
    silos.start("telco")
    silos.verify_ledger("telco")
    record = run_job(
        lr_job(silos, epochs=1, alignment="again"), clients=silos.clients(), store=store
    )
    assert record.state == "succeeded" and record.result["3:lr"]["epochs"] == 1


def psi_sent(s: Silos, party: str) -> int:
    """How many PSI messages ``party``'s ledger records (for any job)."""
    out = subprocess.run(
        [sys.executable, "-m", "fedsilo.cli.main", "audit", "--silo", str(s.c.configs[party])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return sum(1 for line in out.stdout.splitlines() if "psi." in line)


def test_resume_after_a_silo_died_skips_psi_and_split(silos: Silos) -> None:
    store = silos.store()
    fail_mid_training(silos, store, "resumed", signal.SIGKILL)
    silos.procs["telco"].wait(timeout=10)
    silos.start("telco")
    before = {p: psi_sent(silos, p) for p in PARTIES}
    assert all(before.values())
    record = run_job(
        lr_job(silos, epochs=1), clients=silos.clients(), store=store, job_id="resumed", resume=True
    )
    assert record.state == "succeeded"
    assert record.result["3:lr"]["epochs"] == 1 and "1:psi" in record.result
    assert {p: psi_sent(silos, p) for p in PARTIES} == before  # PSI was not run again
    events = [m for _at, m in store.events("resumed")]
    resumed_at = max(i for i, m in enumerate(events) if m.startswith("resuming"))
    later = events[resumed_at:]
    assert not any(m.startswith(("step 1/", "step 2/")) for m in later), later
    assert any(m.startswith("step 3/3: lr") for m in later), later


def test_silo_stopped_mid_training_fails_within_the_keepalive_bound(silos: Silos) -> None:
    assert settings.GRPC_KEEPALIVE_TIME_S + settings.GRPC_KEEPALIVE_TIMEOUT_S < BOUND_S
    fail_mid_training(silos, silos.store(), "stopped", signal.SIGSTOP)
