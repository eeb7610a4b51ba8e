"""Availability of a silo under stalled and excess calls (issue 12, item 8), over real gRPC.

A caller that opens Step streams and stops sending must not starve the health check or
Describe; a stalled stream is ended by the silo with a clear status; the calls and the sessions
one caller may hold are capped, and the call beyond a cap is refused at once with
RESOURCE_EXHAUSTED. Plaintext on loopback (every call comes from one caller, host 127.0.0.1)
except the last test, which checks that under mTLS the caps count the certificate's identity.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from bundled_data import data_file
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support import Consortium, SiloSpec

from fedsilo import settings
from fedsilo.crypto import certs, tls
from fedsilo.errors import LimitExceeded
from fedsilo.protos import fedsilo_pb2 as pb
from fedsilo.protos import fedsilo_pb2_grpc as pb_grpc
from fedsilo.silo_node.demo_data import write_demo_consortium
from fedsilo.silo_node.limits import CallLimiter, paced_replies
from fedsilo.silo_node.node import SiloNode, start_silo
from fedsilo.silo_node.session import JobSession, SessionTable, current_caller

pytestmark = pytest.mark.e2e

FEATURES = [f"x{i}" for i in range(10)]
#: seconds within which a call that must not wait gets its answer
QUICK_S = 2.0
SPEC = {
    "name": "availability",
    "parties": {
        "bank": {"dataset": "main", "role": "active"},
        "bureau": {"dataset": "main", "role": "passive"},
    },
    "steps": [{"kind": "noop"}],
}


class Bank:
    """One plaintext silo, a channel to it, and the stalled streams a test opened."""

    def __init__(self, root: Path) -> None:
        self.consortium = Consortium(root)
        self.consortium.add_silo(SiloSpec("bank", data_file("breast_hetero_guest"), FEATURES))
        self.node: SiloNode = self.consortium.start("bank")
        self.channel = grpc.insecure_channel(self.node.address)
        self.stub = pb_grpc.SiloServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)
        self.release = threading.Event()
        self.calls: list[grpc.Future] = []

    def open_job(self, job_id: str) -> None:
        spec = json.dumps({**SPEC, "job_id": job_id})
        self.stub.OpenJob(pb.OpenJobRequest(job_id=job_id, spec_json=spec), timeout=QUICK_S)

    def step(self, frames: Iterator[pb.Frame]) -> grpc.Future:
        call = self.stub.Step(frames, timeout=120)
        self.calls.append(call)
        return call  # type: ignore[no-any-return]

    def stalled(self, job_id: str, *, header: bool = True) -> grpc.Future:
        """A Step stream that sends its header (or nothing) and then nothing until the end."""

        def frames() -> Iterator[pb.Frame]:
            if header:
                head = pb.StepHeader(job_id=job_id, method="job.echo", seq=1, total_bytes=100)
                yield pb.Frame(header=head)
            self.release.wait()

        return self.step(frames())

    def close(self) -> None:
        self.release.set()
        for call in self.calls:
            call.cancel()
        self.channel.close()
        self.consortium.stop_all()


@pytest.fixture
def bank(tmp_path: Path) -> Iterator[Bank]:
    silo = Bank(tmp_path)
    yield silo
    silo.close()


def wait_until(what: str, check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def ended(calls: list[grpc.Future]) -> list[grpc.Future]:
    return [c for c in calls if c.done()]


def assert_refused(call: grpc.Future, match: str) -> None:
    assert call.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, call.details()
    assert match in call.details(), call.details()


def assert_responsive(silo: Bank) -> None:
    """Health and Describe answer within ``QUICK_S``, several times over."""
    for _ in range(5):
        resp = silo.health.Check(health_pb2.HealthCheckRequest(service=""), timeout=QUICK_S)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
        assert silo.stub.Describe(pb.DescribeRequest(), timeout=QUICK_S).party == "bank"


@pytest.mark.parametrize("cap", ["per caller", "total"])
def test_ten_stalled_streams_leave_health_and_describe_answering(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cap: str
) -> None:
    """Without caps, ten stalled streams would hold all eight server threads and health would
    queue behind them; with them, the calls beyond a cap are refused at once."""
    if cap == "total":  # one caller may take as much as everyone: the total cap does the work
        monkeypatch.setattr(settings, "MAX_JOB_CALLS_PER_CALLER", 100)
    silo = Bank(tmp_path)
    try:
        silo.open_job("stall")
        calls = [silo.stalled("stall") for _ in range(10)]
        admitted = min(settings.MAX_JOB_CALLS_PER_CALLER, settings.MAX_JOB_CALLS)
        wait_until(
            "the calls beyond the cap to be refused", lambda: len(ended(calls)) == 10 - admitted
        )
        for call in ended(calls):
            setting = "MAX_JOB_CALLS_PER_CALLER" if cap == "per caller" else "(MAX_JOB_CALLS)"
            assert_refused(call, setting)
        assert_responsive(silo)
        assert len(ended(calls)) == 10 - admitted  # the admitted ones are still stalled
    finally:
        silo.close()


@pytest.mark.parametrize("header", [True, False], ids=["header-then-nothing", "nothing"])
def test_a_stalled_stream_is_ended_after_the_idle_timeout(
    bank: Bank, monkeypatch: pytest.MonkeyPatch, header: bool
) -> None:
    monkeypatch.setattr(settings, "STEP_STREAM_IDLE_TIMEOUT_S", 0.5)
    bank.open_job("idle")
    start = time.monotonic()
    call = bank.stalled("idle", header=header)
    wait_until("the silo to end the stalled stream", call.done, timeout=10)
    assert time.monotonic() - start >= 0.5
    assert_refused(call, "sent nothing for 0.5 s (STEP_STREAM_IDLE_TIMEOUT_S)")
    # its slot is free again: a full set of new streams is admitted, and each times out too
    more = [bank.stalled("idle") for _ in range(settings.MAX_JOB_CALLS_PER_CALLER)]
    wait_until("the new streams to time out", lambda: len(ended(more)) == len(more))
    for late in more:
        assert_refused(late, "STEP_STREAM_IDLE_TIMEOUT_S")


def test_a_trickling_stream_is_ended_after_the_transfer_cap(
    bank: Bank, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One byte every 0.1 s stays inside the idle timeout, not inside the total cap."""
    monkeypatch.setattr(settings, "STEP_STREAM_IDLE_TIMEOUT_S", 0.5)
    monkeypatch.setattr(settings, "STEP_STREAM_MAX_TRANSFER_S", 1.0)
    bank.open_job("trickle")

    def frames() -> Iterator[pb.Frame]:
        yield pb.Frame(
            header=pb.StepHeader(job_id="trickle", method="job.echo", seq=1, total_bytes=1000)
        )
        for _ in range(1000):
            if bank.release.wait(0.1):
                return
            yield pb.Frame(chunk=b"x")

    call = bank.step(frames())
    wait_until("the silo to end the trickling stream", call.done, timeout=10)
    assert_refused(call, "longer than 1 s to arrive (STEP_STREAM_MAX_TRANSFER_S)")


def test_the_next_stream_of_a_caller_is_refused_while_n_run(bank: Bank) -> None:
    n = settings.MAX_JOB_CALLS_PER_CALLER
    bank.open_job("cap")
    running = [bank.stalled("cap") for _ in range(n)]
    extra = bank.stalled("cap")
    wait_until("the extra stream to be refused", extra.done, timeout=QUICK_S)
    assert_refused(extra, f"{n} calls from 'ipv4:127.0.0.1' already in progress")
    assert not ended(running)
    # a stream that ends (here: cancelled by its caller) frees its slot for the next one
    running[0].cancel()
    wait_until("the freed slot to admit a new stream", lambda: _admits(bank))


def _admits(bank: Bank) -> bool:
    """Whether a new stream is admitted (still running after a moment, not refused)."""
    call = bank.stalled("cap")
    time.sleep(0.3)
    return not call.done()


def test_open_sessions_are_capped_per_caller(bank: Bank, monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenJob beyond the cap is refused; the coordinator's client gets LimitExceeded naming the
    silo and the setting; closed and expired sessions make room."""
    monkeypatch.setattr(settings, "MAX_OPEN_SESSIONS_PER_CALLER", 2)
    client = bank.consortium.clients()["bank"]
    spec = {**SPEC, "job_id": "j"}
    client.open_job("j1", {**spec, "job_id": "j1"}, resume=False)
    client.open_job("j2", {**spec, "job_id": "j2"}, resume=False)
    with pytest.raises(
        LimitExceeded,
        match="silo 'bank'.*2 job sessions open for 'ipv4:127.0.0.1'.*MAX_OPEN_SESSIONS_PER_CALLER",
    ):
        client.open_job("j3", {**spec, "job_id": "j3"}, resume=False)
    client.close_job("j1")
    client.open_job("j3", {**spec, "job_id": "j3"}, resume=False)
    monkeypatch.setattr(settings, "SESSION_IDLE_TIMEOUT_S", 0.2)
    time.sleep(0.3)
    client.open_job("j4", {**spec, "job_id": "j4"}, resume=False)  # j2 and j3 expired first
    assert bank.node.ctx.sessions.find("j4") is not None


def test_the_session_cap_counts_each_caller_and_all(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "MAX_OPEN_SESSIONS_PER_CALLER", 2)
    monkeypatch.setattr(settings, "MAX_OPEN_SESSIONS", 3)
    table = SessionTable()

    def add(caller: str, job_id: str) -> None:
        token = current_caller.set(caller)
        try:
            table.add(JobSession(job_id=job_id, spec={}, role="active", dataset="main"))
        finally:
            current_caller.reset(token)

    add("a", "a1")
    add("a", "a2")
    with pytest.raises(LimitExceeded, match="for 'a'.*MAX_OPEN_SESSIONS_PER_CALLER"):
        add("a", "a3")
    add("b", "b1")
    with pytest.raises(LimitExceeded, match=r"3 job sessions open.*\(MAX_OPEN_SESSIONS\)"):
        add("c", "c1")


def test_the_call_limiter_counts_each_caller_and_all() -> None:
    limiter = CallLimiter(total=3, per_caller=2)
    a1, _a2 = limiter.admit("a"), limiter.admit("a")
    with pytest.raises(LimitExceeded, match="2 calls from 'a'"):
        limiter.admit("a")
    limiter.admit("b")
    with pytest.raises(LimitExceeded, match=r"3 calls already in progress.*\(MAX_JOB_CALLS\)"):
        limiter.admit("c")
    a1()
    a1()  # a release counts once, however often it runs
    assert limiter.in_progress("a") == 1 and limiter.in_progress() == 2
    limiter.admit("c")


@pytest.mark.parametrize("limit", ["idle", "total"])
def test_a_caller_that_stops_taking_replies_is_cancelled(limit: str) -> None:
    """gRPC takes the next reply frame once the caller has read the last one (``next`` here)."""
    cancelled = threading.Event()
    idle_s, total_s = (0.3, 60.0) if limit == "idle" else (60.0, 0.5)
    replies = paced_replies(iter(range(100)), cancelled.set, idle_s=idle_s, total_s=total_s)
    for expected in range(3):  # taken well within idle_s, and 0.3 s in all
        assert next(replies) == expected
        time.sleep(0.1)
    assert not cancelled.is_set()
    if limit == "idle":  # frame 2 is never taken
        assert cancelled.wait(2.0)
    else:  # frames keep being taken, just too slowly in all
        while not cancelled.is_set():
            next(replies)
            time.sleep(0.1)
        assert next(replies) < 10
    replies.close()


def test_assumptions() -> None:
    assert settings.MAX_JOB_CALLS < settings.SERVER_THREADS
    assert settings.MAX_JOB_CALLS_PER_CALLER <= settings.MAX_JOB_CALLS
    assert settings.STEP_STREAM_IDLE_TIMEOUT_S < settings.STEP_STREAM_MAX_TRANSFER_S


# --- under mTLS: the caps count the certificate's identity ---------------------------------------


@pytest.fixture
def tls_bank(tmp_path: Path) -> Iterator[tuple[SiloNode, grpc.Channel]]:
    certs.init_ca(tmp_path / "certs")
    certs.issue(tmp_path / "certs", "bank", role="silo")
    files = certs.issue(tmp_path / "certs", "coordinator", role="coordinator")
    node = start_silo(write_demo_consortium(tmp_path, tls=True)["bank"])
    creds = tls.channel_credentials(ca=files.ca, cert=files.cert, key=files.key)
    channel = grpc.secure_channel(node.address, creds, options=tls.identity_options("bank"))
    yield node, channel
    channel.close()
    node.stop(grace=None)


def test_under_mtls_the_coordinator_identity_is_capped_and_health_answers(
    tls_bank: tuple[SiloNode, grpc.Channel],
) -> None:
    """Health Watch streams stay open for ever, so they count as job calls: the coordinator's
    fifth is refused, naming its certificate, while health checks still answer."""
    _node, channel = tls_bank
    health = health_pb2_grpc.HealthStub(channel)
    n = settings.MAX_JOB_CALLS_PER_CALLER
    watches = [
        health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=60) for _ in range(n + 1)
    ]
    try:
        wait_until("one watch to be refused", lambda: len(ended(watches)) == 1, timeout=10)
        assert_refused(ended(watches)[0], f"{n} calls from 'coordinator' already in progress")
        for _ in range(5):
            resp = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=QUICK_S)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        assert len(ended(watches)) == 1
    finally:
        for watch in watches:
            watch.cancel()
