"""Session keys signed with the silos' certificate keys: a coordinator cannot swap them.

First the pure checks (``fedsilo.crypto.session_auth``, no gRPC), then a real mTLS consortium
(the demo's data and configs, a fresh CA) where a coordinator relaying a key of its own is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from fedsilo.coordinator.client import SiloClient
from fedsilo.coordinator.config import load_coordinator_config, parse_job_spec
from fedsilo.coordinator.connect import connect_silos
from fedsilo.coordinator.orchestrator import run_job
from fedsilo.coordinator.store import JobStore
from fedsilo.crypto import certs
from fedsilo.crypto.sealing import JobKeys
from fedsilo.crypto.session_auth import (
    SessionKey,
    SessionKeySigner,
    session_key_statement,
    verify_peer_keys,
    verify_session_key,
)
from fedsilo.errors import AuthError, ConfigError, JobError, NotFound, ProtocolError
from fedsilo.silo_node.demo_data import write_demo_consortium
from fedsilo.silo_node.node import SiloNode, start_silo

JOB = "job-1"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, certs.TlsFiles]:
    home = tmp_path_factory.mktemp("pki")
    certs.init_ca(home / "consortium")
    files = {p: certs.issue(home / "consortium", p, role="silo") for p in ("bank", "bureau")}
    files["coordinator"] = certs.issue(home / "consortium", "coordinator", role="coordinator")
    certs.init_ca(home / "foreign")
    files["foreign_bureau"] = certs.issue(home / "foreign", "bureau", role="silo")
    return files


def _ca(pki: dict[str, certs.TlsFiles]) -> x509.Certificate:
    return certs.load_certificate(pki["bank"].ca)


def _any_signer(party: str, files: certs.TlsFiles) -> SessionKeySigner:
    """A signer over any certificate, as a hostile coordinator builds one with its own
    (``SessionKeySigner.load`` insists on a silo certificate)."""
    pem = files.cert.read_text()
    return SessionKeySigner(party=party, key=certs.load_private_key(files.key), certificate_pem=pem)


def _signed(pki: dict[str, certs.TlsFiles], party: str, job_id: str = JOB) -> SessionKey:
    return SessionKeySigner.load(party, pki[party]).sign(job_id, JobKeys().public_bytes)


# --- pure checks ---------------------------------------------------------------------------------


def test_a_signed_key_passes(pki: dict[str, certs.TlsFiles]) -> None:
    key = _signed(pki, "bureau")
    assert verify_peer_keys(_ca(pki), JOB, {"bureau": key}) == {"bureau": key.public_key}


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda k: replace(k, public_key=JobKeys().public_bytes), "signature does not match"),
        (lambda k: replace(k, signature=b""), "signature does not match"),
        (lambda k: SessionKey(k.public_key), "not signed"),
        (lambda k: replace(k, certificate_pem="junk"), "not a PEM certificate"),
    ],
    ids=["swapped-key", "no-signature", "unsigned", "junk-certificate"],
)
def test_a_tampered_key_is_refused(pki: dict[str, certs.TlsFiles], change, match: str) -> None:
    with pytest.raises(AuthError, match=f"'bureau'.*{match}"):
        verify_session_key(_ca(pki), JOB, "bureau", change(_signed(pki, "bureau")))


def test_a_key_of_another_job_is_refused(pki: dict[str, certs.TlsFiles]) -> None:
    old = _signed(pki, "bureau", job_id="job-0")
    with pytest.raises(AuthError, match="'bureau'.*signature does not match"):
        verify_session_key(_ca(pki), JOB, "bureau", old)


def test_a_key_presented_for_another_party_is_refused(pki: dict[str, certs.TlsFiles]) -> None:
    """bank's signed key relayed as bureau's: the certificate names bank, not bureau."""
    with pytest.raises(AuthError, match="'bureau'.*belongs to 'bank'"):
        verify_session_key(_ca(pki), JOB, "bureau", _signed(pki, "bank"))


def test_the_coordinator_cannot_sign_for_a_silo(pki: dict[str, certs.TlsFiles]) -> None:
    """The coordinator holds a consortium certificate, but one that names the coordinator."""
    signer = _any_signer("coordinator", pki["coordinator"])
    own = signer.sign(JOB, JobKeys().public_bytes)
    with pytest.raises(AuthError, match="belongs to 'coordinator'"):
        verify_session_key(_ca(pki), JOB, "bureau", own)
    # nor by signing the statement for "bureau" with its own key
    statement = session_key_statement(JOB, "bureau", own.public_key)
    forged = replace(own, signature=signer.key.sign(statement, ec.ECDSA(hashes.SHA256())))
    with pytest.raises(AuthError, match="belongs to 'coordinator'"):
        verify_session_key(_ca(pki), JOB, "bureau", forged)


def test_a_certificate_from_another_ca_is_refused(pki: dict[str, certs.TlsFiles]) -> None:
    foreign = SessionKeySigner.load("bureau", pki["foreign_bureau"]).sign(JOB, b"k" * 32)
    with pytest.raises(AuthError, match="'bureau'.*not issued by this silo's CA"):
        verify_session_key(_ca(pki), JOB, "bureau", foreign)


def test_an_expired_or_future_certificate_is_refused(pki: dict[str, certs.TlsFiles]) -> None:
    key = _signed(pki, "bureau")
    later = datetime.now(UTC) + timedelta(days=certs.CERT_DAYS + 1)
    with pytest.raises(AuthError, match="'bureau'.*not valid now"):
        verify_session_key(_ca(pki), JOB, "bureau", key, now=later)
    with pytest.raises(AuthError, match="not valid now"):
        verify_session_key(_ca(pki), JOB, "bureau", key, now=datetime.now(UTC) - timedelta(days=1))


def test_one_bad_key_refuses_them_all(pki: dict[str, certs.TlsFiles]) -> None:
    peers = {"bank": _signed(pki, "bank"), "bureau": SessionKey(b"k" * 32)}
    with pytest.raises(AuthError, match="'bureau'"):
        verify_peer_keys(_ca(pki), JOB, peers)


def test_the_statement_separates_its_fields() -> None:
    assert session_key_statement("ab", "c", b"k") != session_key_statement("a", "bc", b"k")
    assert session_key_statement("j", "p", b"k1") != session_key_statement("j", "p", b"k2")


def test_a_silo_cannot_sign_under_another_name(pki: dict[str, certs.TlsFiles]) -> None:
    with pytest.raises(ConfigError, match="names 'bank', expected 'bureau'"):
        SessionKeySigner.load("bureau", pki["bank"])


# --- over real gRPC with mTLS --------------------------------------------------------------------


class _Consortium:
    def __init__(self, root: Path, nodes: dict[str, SiloNode]) -> None:
        self.root, self.nodes = root, nodes
        silos = "".join(f'[silos.{p}]\naddress = "{n.address}"\n' for p, n in nodes.items())
        path = root / "coordinator.toml"
        path.write_text(
            f'name = "coordinator"\ndatabase = "sqlite:///{root / "coord.db"}"\n[tls]\n'
            'ca = "certs/ca.pem"\ncert = "certs/coordinator.pem"\nkey = "certs/coordinator.key"\n'
            + silos
        )
        self.config = load_coordinator_config(path)

    def clients(self) -> dict[str, SiloClient]:
        return connect_silos(self.config)


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Consortium]:
    """The demo's three silos (bank, bureau, lender) with mTLS and a fresh consortium CA."""
    root = tmp_path_factory.mktemp("tls_consortium")
    certs.init_ca(root / "certs")
    certs.issue(root / "certs", "coordinator", role="coordinator")
    for party in ("bank", "bureau", "lender"):
        certs.issue(root / "certs", party, role="silo")
    nodes = {p: start_silo(path) for p, path in write_demo_consortium(root, tls=True).items()}
    try:
        yield _Consortium(root, nodes)
    finally:
        for node in nodes.values():
            node.stop(grace=None)


SPEC = {
    "name": "pair",
    "parties": {
        "bank": {"role": "active", "dataset": "customers"},
        "bureau": {"role": "passive", "dataset": "customers"},
    },
    "steps": [{"kind": "psi", "alignment": "pair"}],
}


def _open(clients: dict[str, SiloClient], job_id: str) -> dict[str, SessionKey]:
    spec = {**SPEC, "job_id": job_id}
    return {p: clients[p].open_job(job_id, spec, resume=False)[0] for p in SPEC["parties"]}


def test_tls_silos_sign_their_session_keys(consortium: _Consortium) -> None:
    clients = consortium.clients()
    keys = _open(clients, "signed")
    try:
        ca = certs.load_certificate(consortium.root / "certs" / "ca.pem")
        assert verify_peer_keys(ca, "signed", keys).keys() == {"bank", "bureau"}
        for p in keys:
            clients[p].set_peers("signed", keys)
        assert consortium.nodes["bank"].ctx.sessions.get("signed").keys.peers.keys() == {"bureau"}
    finally:
        for p in keys:
            clients[p].close_job("signed", failed=True, reason="test")


@pytest.mark.parametrize("attack", ["swap", "unsigned", "coordinator-signed"])
def test_a_coordinator_swapping_a_key_is_refused(consortium: _Consortium, attack: str) -> None:
    """The coordinator hands bank a key of its own for bureau: bank refuses, naming bureau, and
    holds no peer key afterwards (no step could seal to anyone)."""
    clients, job = consortium.clients(), f"swap-{attack}"
    keys = _open(clients, job)
    mine = JobKeys().public_bytes
    coordinator = certs.TlsFiles(
        ca=consortium.root / "certs" / "ca.pem",
        cert=consortium.root / "certs" / "coordinator.pem",
        key=consortium.root / "certs" / "coordinator.key",
    )
    forged = {
        "swap": replace(keys["bureau"], public_key=mine),
        "unsigned": SessionKey(mine),
        "coordinator-signed": _any_signer("coordinator", coordinator).sign(job, mine),
    }[attack]
    try:
        with pytest.raises(AuthError, match="'bureau'"):
            clients["bank"].set_peers(job, {**keys, "bureau": forged})
        assert consortium.nodes["bank"].ctx.sessions.get(job).keys.peers == {}
    finally:
        for p in keys:
            clients[p].close_job(job, failed=True, reason="test")


def test_a_tls_silo_wants_a_key_for_every_party_and_only_them(consortium: _Consortium) -> None:
    clients, job = consortium.clients(), "parties"
    keys = _open(clients, job)
    try:
        with pytest.raises(ProtocolError, match="no session key for party 'bureau'"):
            clients["bank"].set_peers(job, {"bank": keys["bank"]})
        with pytest.raises(ProtocolError, match="'lender', which is not a party"):
            clients["bank"].set_peers(job, {**keys, "lender": SessionKey(JobKeys().public_bytes)})
    finally:
        for p in keys:
            clients[p].close_job(job, failed=True, reason="test")


def test_an_honest_tls_job_runs_and_a_swapping_one_fails(consortium: _Consortium) -> None:
    store = JobStore(consortium.config.database_url)
    spec = parse_job_spec(SPEC, consortium.root / "job.toml")
    record = run_job(spec, clients=consortium.clients(), store=store)
    assert record.state == "succeeded" and record.result["1:psi"]["count"] > 0

    class Swapping(SiloClient):
        def set_peers(self, job_id: str, keys) -> None:  # type: ignore[no-untyped-def]
            swapped = {p: replace(k, public_key=JobKeys().public_bytes) for p, k in keys.items()}
            super().set_peers(job_id, swapped)

    clients = {p: Swapping(p, c.channel) for p, c in consortium.clients().items()}
    with pytest.raises(JobError, match="session key of '(bank|bureau)'") as err:
        run_job(
            parse_job_spec({**SPEC, "name": "swapped"}, consortium.root / "job.toml"),
            clients=clients,
            store=store,
        )
    assert isinstance(err.value.__cause__, AuthError)
    failed = next(j for j in store.list_jobs() if j.name == "swapped")
    assert failed.state == "failed"
    with pytest.raises(NotFound):  # closed after the refusal
        consortium.nodes["bank"].ctx.sessions.get(failed.job_id)
