"""Faults at the coordinator: a SIGKILL mid-job, a restart, and how failed calls are classified.

The kill test runs ``fedsilo coordinator serve`` as a real subprocess against two live silos
(plaintext on loopback), submits a long job of ``noop`` steps, kills the process with SIGKILL
while the job row says ``running``, restarts it on the same database, and checks that the job
ended ``failed`` with the restart reason (``JobStore.fail_interrupted`` runs at start), that its
events survived, and that the restarted coordinator runs a new job to success.

The classification tests pin what the coordinator's client makes of a failed call: UNAVAILABLE is
a retried ``SiloUnavailable``; a silo whose TLS certificate does not prove the expected identity
is an ``AuthError`` at once, without the retries (retrying cannot fix a certificate).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from bundled_data import data_file
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from support import Consortium, SiloSpec, free_port

from fedsilo import settings
from fedsilo.coordinator.client import SiloClient
from fedsilo.coordinator.server import RESTART_REASON
from fedsilo.crypto import certs, tls
from fedsilo.errors import AuthError, JobError, PolicyError, SiloUnavailable
from fedsilo.grpc_errors import is_retryable, raise_from_rpc
from fedsilo.grpc_options import channel_options
from fedsilo.protos import fedsilo_pb2 as pb
from fedsilo.protos import fedsilo_pb2_grpc as pb_grpc

pytestmark = pytest.mark.e2e

GUEST = [f"x{i}" for i in range(10)]
HOST = [f"x{i}" for i in range(20)]


# --- a real coordinator process, killed and restarted ---------------------------------------------


@pytest.fixture
def consortium(tmp_path: Path) -> Iterator[Consortium]:
    c = Consortium(tmp_path)
    c.add_silo(SiloSpec("bank", data_file("breast_hetero_guest"), GUEST, label="y"))
    c.add_silo(SiloSpec("bureau", data_file("breast_hetero_host"), HOST))
    c.start_all()
    yield c
    c.stop_all()


def coordinator_toml(c: Consortium, port: int) -> Path:
    """The coordinator config ``Consortium`` writes, plus the address it serves its API on."""
    path = c.root / "coordinator.toml"
    c.coordinator_config()  # writes path with the silos' addresses
    text = path.read_text().replace(
        'name = "coordinator"\n', f'name = "coordinator"\nlisten = "127.0.0.1:{port}"\n', 1
    )
    path.write_text(text)
    return path


def job_toml(steps: int) -> str:
    parties = (
        '[parties.bank]\ndataset = "main"\nrole = "active"\n'
        '[parties.bureau]\ndataset = "main"\nrole = "passive"\n'
    )
    return 'name = "faults"\n' + parties + '[[steps]]\nkind = "noop"\n' * steps


def start_coordinator(config: Path, port: int, log: Path) -> tuple[subprocess.Popen[bytes], Any]:
    """``fedsilo coordinator serve`` in its own process, once its API answers health."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fedsilo.cli.main",
                "coordinator",
                "serve",
                "--config",
                str(config),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ},
        )
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=30)
    except grpc.FutureTimeoutError:
        proc.kill()
        pytest.fail(f"coordinator did not start:\n{log.read_text()}")
    return proc, channel


def wait_for(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.slow
def test_coordinator_killed_mid_job_leaves_no_job_running(consortium: Consortium) -> None:
    store = consortium.store()  # before coordinator_toml: store() rewrites the config
    port = free_port()
    config = coordinator_toml(consortium, port)
    log = consortium.root / "coordinator.log"
    proc, channel = start_coordinator(config, port, log)
    try:
        stub = pb_grpc.CoordinatorServiceStub(channel)
        job_id = stub.SubmitJob(pb.SubmitJobRequest(spec_toml=job_toml(5000)), timeout=10).job_id
        wait_for(
            "the job to run its steps",
            lambda: store.get_job(job_id).state == "running" and len(store.events(job_id)) >= 3,
        )
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        channel.close()
        if proc.poll() is None:
            proc.kill()
    events_at_kill = store.events(job_id)
    assert store.get_job(job_id).state == "running"  # the kill really interrupted it
    queued = store.create_job("never-started", {"parties": {}, "steps": []})

    proc, channel = start_coordinator(config, port, log)
    try:
        for jid in (job_id, queued):
            rec = store.get_job(jid)
            assert (rec.state, rec.reason) == ("failed", RESTART_REASON), jid
        assert store.events(job_id)[: len(events_at_kill)] == events_at_kill  # nothing lost
        stub = pb_grpc.CoordinatorServiceStub(channel)
        assert stub.GetJob(pb.GetJobRequest(job_id=job_id), timeout=10).state == "failed"
        fresh = stub.SubmitJob(pb.SubmitJobRequest(spec_toml=job_toml(1)), timeout=10).job_id
        wait_for(
            "the new job to finish", lambda: store.get_job(fresh).state not in ("queued", "running")
        )
        assert store.get_job(fresh).state == "succeeded", store.get_job(fresh).reason
        assert [j.job_id for j in store.list_jobs() if j.state in ("queued", "running")] == []
    finally:
        channel.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


# --- how the client classifies a failed call ------------------------------------------------------


class _FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


HOSTNAME = (
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: Custom "
    "verification check failed with error: UNAUTHENTICATED: Hostname Verification Check "
    "failed."
)
FOREIGN_CA = (
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: Tls "
    "handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:1000007d:SSL routines:"
    "OPENSSL_internal:CERTIFICATE_VERIFY_FAILED: unable to get local issuer certificate"
)
REFUSED = (
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: Failed to "
    "connect to remote host: Connection refused"
)


@pytest.mark.parametrize(
    ("code", "details", "expected", "retry"),
    [
        (grpc.StatusCode.UNAVAILABLE, REFUSED, SiloUnavailable, True),
        (grpc.StatusCode.UNAVAILABLE, "Socket closed", SiloUnavailable, True),
        (grpc.StatusCode.UNAVAILABLE, HOSTNAME, AuthError, False),
        (grpc.StatusCode.UNAVAILABLE, FOREIGN_CA, AuthError, False),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded", SiloUnavailable, False),
        (grpc.StatusCode.PERMISSION_DENIED, "policy does not allow", PolicyError, False),
        (grpc.StatusCode.UNAUTHENTICATED, "caller 'x' is not an identity", AuthError, False),
        (grpc.StatusCode.INTERNAL, "internal error in Step", JobError, False),
    ],
)
def test_failed_calls_are_classified(
    code: grpc.StatusCode, details: str, expected: type[Exception], retry: bool
) -> None:
    err = _FakeRpcError(code, details)
    domain = raise_from_rpc(err, "bank")
    assert type(domain) is expected
    assert "bank" in str(domain)
    assert is_retryable(err, "bank") is retry


def test_wrong_identity_names_the_expected_identity() -> None:
    err = raise_from_rpc(_FakeRpcError(grpc.StatusCode.UNAVAILABLE, HOSTNAME), "bank")
    assert "bank.fedsilo.invalid" in str(err) and "did not prove its identity" in str(err)


@pytest.fixture(scope="module")
def tls_silo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, dict[str, Any]]]:
    """A TLS server holding the 'bank' certificate (health only), and everyone's files."""
    home = tmp_path_factory.mktemp("pki")
    certs.init_ca(home / "consortium")
    files = {p: certs.issue(home / "consortium", p, role="silo") for p in ("bank", "bureau")}
    files["coordinator"] = certs.issue(home / "consortium", "coordinator", role="coordinator")
    certs.init_ca(home / "foreign")
    files["foreign"] = certs.issue(home / "foreign", "coordinator", role="coordinator")
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=2),
        interceptors=[tls.IdentityInterceptor(allowed={"coordinator"}, role="coordinator")],
    )
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    bank = files["bank"]
    port = server.add_secure_port(
        "127.0.0.1:0", tls.server_credentials(ca=bank.ca, cert=bank.cert, key=bank.key)
    )
    server.start()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    yield port, files
    server.stop(None)


def _client(port: int, files: certs.TlsFiles, party: str) -> SiloClient:
    """What ``coordinator.connect.open_channel`` builds: our CA, our cert, ``party``'s identity."""
    creds = tls.channel_credentials(ca=files.ca, cert=files.cert, key=files.key)
    options = channel_options() + tls.identity_options(party)
    return SiloClient(party, grpc.secure_channel(f"127.0.0.1:{port}", creds, options=options))


class _Counting:
    """Wraps a stub method and counts the attempts ``SiloClient._idempotent`` makes."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn, self.calls = fn, 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.fn(*args, **kwargs)


def _attempts(client: SiloClient) -> tuple[int, Exception | None]:
    check = _Counting(client._health.Check)
    try:
        client._idempotent(check, health_pb2.HealthCheckRequest(service=""))
    except (AuthError, SiloUnavailable) as err:
        return check.calls, err
    return check.calls, None


def test_right_identity_is_answered(tls_silo: tuple[int, dict[str, Any]]) -> None:
    port, files = tls_silo
    assert _client(port, files["coordinator"], "bank").health() == "SERVING"


@pytest.mark.parametrize(("who", "expect_party"), [("coordinator", "bureau"), ("foreign", "bank")])
def test_tls_identity_failure_is_auth_error_without_retries(
    tls_silo: tuple[int, dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    who: str,
    expect_party: str,
) -> None:
    """Expecting 'bureau' at bank's address, or trusting another CA: one attempt, AuthError."""
    monkeypatch.setattr(settings, "RETRY_BACKOFF_S", 0.0)
    port, files = tls_silo
    calls, err = _attempts(_client(port, files[who], expect_party))
    assert isinstance(err, AuthError), err
    assert calls == 1
    assert "did not prove its identity" in str(err)


def test_unreachable_silo_is_retried_then_unavailable(
    tls_silo: tuple[int, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "RETRY_BACKOFF_S", 0.0)
    _port, files = tls_silo
    calls, err = _attempts(_client(free_port(), files["coordinator"], "bank"))
    assert isinstance(err, SiloUnavailable), err
    assert calls == settings.IDEMPOTENT_RETRIES
