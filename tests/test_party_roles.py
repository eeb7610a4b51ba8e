"""Certificates carry a role, and only silos can be parties: a hostile coordinator that names
itself (or a second identity it holds) a party of a job is refused, over real gRPC with mTLS.

Four real silo servers of one consortium CA (breast data): bank, bureau and lender work with
any silo; telco's policy lists its peers (``peers = ["bank", "bureau"]``). The coordinator holds
its own certificate (role coordinator), and for the attacks a second coordinator-role
certificate ("mallory"), a silo-role certificate under the coordinator's own name (a CA that
issued one it should not have), and certificates without any role.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from bundled_data import data_file
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from support import Consortium, SiloSpec

from fedsilo.coordinator.client import SiloClient
from fedsilo.coordinator.config import load_coordinator_config, parse_job_spec
from fedsilo.coordinator.connect import connect_silos
from fedsilo.crypto import certs, tls
from fedsilo.crypto.sealing import JobKeys
from fedsilo.crypto.session_auth import (
    SessionKeySigner,
    check_silo_certificate,
    silo_certificate,
    verify_session_key,
)
from fedsilo.errors import AuthError, ConfigError, NotFound, PolicyError
from fedsilo.grpc_options import channel_options
from fedsilo.silo_node.config import load_silo_config

pytestmark = pytest.mark.e2e

FEATURES = [f"x{i}" for i in range(10)]
HONEST = ("bank", "bureau", "lender")
COORDINATOR = "coordinator"
PSI = {"kind": "psi", "alignment": "roles"}
#: what a silo says of a session key signed with each of the coordinator's second identities
HELD = {"mallory": "has role 'coordinator', not silo", "ghost": "carries no fedsilo role"}
#: per kind: the honest parties' roles, the role the hostile party takes, the steps
KINDS: dict[str, tuple[dict[str, str], str, list[dict[str, Any]]]] = {
    # as PSI leader (the active party) it would test chosen ids against the silos' tables
    "psi": ({p: "passive" for p in HONEST}, "active", [PSI]),
    "secureboost": (
        {"bank": "active", "bureau": "passive", "lender": "passive"},
        "passive",
        [PSI, {"kind": "secureboost", "n_estimators": 2, "max_depth": 2}],
    ),
    "lr": (
        {"bank": "active", "bureau": "passive", "lender": "passive"},
        "passive",
        [PSI, {"kind": "lr", "max_iter": 1}],
    ),
    # as a horizontal member it would receive the CKKS secret key
    "hlr": ({p: "member" for p in HONEST}, "member", [{"kind": "hlr"}]),
    "hxgb": (
        {p: "member" for p in HONEST},
        "member",
        [{"kind": "hxgb", "n_estimators": 2, "max_depth": 2}],
    ),
}


# --- certificates --------------------------------------------------------------------------------


def _issue_without_role(
    ca_folder: Path, out: Path, name: str, extra: tuple[x509.ObjectIdentifier, ...] = ()
) -> certs.TlsFiles:
    """A certificate of the consortium CA naming ``name`` the way fedsilo does, but with no
    role (what other tooling, or fedsilo before roles, issued), or with ``extra`` usages."""
    ca_cert = certs.load_certificate(ca_folder / "ca.pem")
    ca_key = certs.load_private_key(ca_folder / "ca.key")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    sans = [x509.DNSName(certs.identity_dns_name(name)), x509.DNSName("localhost")]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH, *extra]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    out.mkdir(parents=True, exist_ok=True)
    files = certs.TlsFiles(
        ca=ca_folder / "ca.pem", cert=out / f"{name}.pem", key=out / f"{name}.key"
    )
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


def _any_signer(party: str, files: certs.TlsFiles) -> SessionKeySigner:
    """A session-key signer over any certificate the coordinator holds (``load`` insists on a
    silo certificate, so a hostile coordinator builds its signer by hand)."""
    pem = files.cert.read_text()
    return SessionKeySigner(party=party, key=certs.load_private_key(files.key), certificate_pem=pem)


# --- the consortium ------------------------------------------------------------------------------


@dataclass
class World:
    root: Path
    consortium: Consortium
    files: dict[str, certs.TlsFiles]

    def clients(self) -> dict[str, SiloClient]:
        path = self.root / "coordinator.toml"
        silos = "".join(
            f'[silos.{p}]\naddress = "{n.address}"\n' for p, n in self.consortium.nodes.items()
        )
        path.write_text(
            f'name = "coordinator"\ndatabase = "sqlite:///{self.root / "coord.db"}"\n[tls]\n'
            'ca = "certs/ca.pem"\ncert = "certs/coordinator.pem"\nkey = "certs/coordinator.key"\n'
            + silos
        )
        return connect_silos(load_coordinator_config(path))

    def client_as(self, who: str, silo: str) -> SiloClient:
        """A client of ``silo`` presenting the certificate ``who`` (for the caller checks)."""
        f = self.files[who]
        creds = tls.channel_credentials(ca=f.ca, cert=f.cert, key=f.key)
        address = self.consortium.nodes[silo].address
        options = channel_options() + tls.identity_options(silo)
        return SiloClient(silo, grpc.secure_channel(address, creds, options=options))

    def session_count(self, silo: str, job_id: str) -> int:
        try:
            self.consortium.nodes[silo].ctx.sessions.get(job_id)
        except NotFound:
            return 0
        return 1


def _tls_section(root: Path, party: str) -> str:
    c = root / "certs"
    return (
        f'[tls]\nca = "{c / "ca.pem"}"\ncert = "{c / f"{party}.pem"}"\n'
        f'key = "{c / f"{party}.key"}"\ncoordinator = "{COORDINATOR}"\n'
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("party_roles")
    folder = root / "certs"
    certs.init_ca(folder, name="roles test consortium")
    files = {p: certs.issue(folder, p, role="silo") for p in (*HONEST, "telco")}
    files[COORDINATOR] = certs.issue(folder, COORDINATOR, role="coordinator")
    files["mallory"] = certs.issue(folder, "mallory", role="coordinator")
    # the same CA, a second folder: a silo-role certificate under the coordinator's name
    rogue = root / "rogue"
    rogue.mkdir()
    for name in ("ca.pem", "ca.key"):
        shutil.copy(folder / name, rogue / name)
    files["silo-named-coordinator"] = certs.issue(rogue, COORDINATOR, role="silo")
    files["coordinator-named-bank"] = certs.issue(rogue, "bank", role="coordinator")
    files["ghost"] = _issue_without_role(folder, root / "norole", "ghost")
    files["coordinator-without-role"] = _issue_without_role(folder, root / "norole", COORDINATOR)

    c = Consortium(root)
    for party in HONEST + ("telco",):
        csv = data_file("breast_homo_guest" if party == "bank" else "breast_homo_host")
        peers = 'peers = ["bank", "bureau"]\n' if party == "telco" else ""
        path = c.add_silo(SiloSpec(party, csv, FEATURES, label="y", policy=peers))
        text = path.read_text().replace(
            "[tls]\ninsecure_plaintext = true\n", _tls_section(root, party)
        )
        path.write_text(text)
    c.start_all()
    try:
        yield World(root, c, files)
    finally:
        c.stop_all()


def _wire(kind: str, job_id: str, hostile: str | None) -> dict[str, Any]:
    """The job spec as the silos receive it; ``hostile`` joins the honest parties."""
    roles, hostile_role, steps = KINDS[kind]
    parties = {p: {"dataset": "main", "role": r} for p, r in roles.items()}
    if hostile is not None:
        parties[hostile] = {"dataset": "main", "role": hostile_role}
    raw = {"name": f"roles-{kind}", "parties": parties, "steps": steps}
    return parse_job_spec(raw, Path("job.toml")).to_wire(job_id)


def _close(clients: dict[str, SiloClient], parties: list[str], job_id: str) -> None:
    for p in parties:
        try:
            clients[p].close_job(job_id, failed=True, reason="test")
        except NotFound:
            pass


# --- the coordinator names itself a party --------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_coordinator_naming_itself_is_refused_at_open_job(world: World, kind: str) -> None:
    """Every honest silo refuses the job outright, naming the coordinator: no session opens,
    so there is no session key for the coordinator to receive anything sealed to."""
    clients, job = world.clients(), f"self-{kind}"
    wire = _wire(kind, job, COORDINATOR)
    for silo in HONEST:
        with pytest.raises(PolicyError, match=f"'{silo}'.*coordinator 'coordinator' as a party"):
            clients[silo].open_job(job, wire, resume=False)
        assert world.session_count(silo, job) == 0


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("identity", ["mallory", "ghost"])
def test_a_second_identity_of_the_coordinator_is_refused_at_set_peers(
    world: World, kind: str, identity: str
) -> None:
    """The coordinator names a party after a second certificate it holds (role coordinator, or
    no role at all) and relays a session key it signed with it: the silos opened the job (the
    name alone is not the coordinator's), but none accepts that key, so none holds a key to seal
    anything to that party (the CKKS secret key, PSI replies, gradients)."""
    clients, job = world.clients(), f"second-{identity}-{kind}"
    wire = _wire(kind, job, identity)
    keys = {p: clients[p].open_job(job, wire, resume=False)[0] for p in HONEST}
    keys[identity] = _any_signer(identity, world.files[identity]).sign(job, JobKeys().public_bytes)
    held = HELD[identity]
    try:
        for silo in HONEST:
            with pytest.raises(AuthError, match=f"'{silo}'.*certificate of '{identity}' {held}"):
                clients[silo].set_peers(job, keys)
            assert world.consortium.nodes[silo].ctx.sessions.get(job).keys.peers == {}
    finally:
        _close(clients, list(HONEST), job)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_same_jobs_without_the_coordinator_open(world: World, kind: str) -> None:
    """The control: the specs above minus the hostile party open and exchange keys, so the
    refusals come from the party named, nothing else."""
    clients, job = world.clients(), f"honest-{kind}"
    wire = _wire(kind, job, None)
    keys = {p: clients[p].open_job(job, wire, resume=False)[0] for p in HONEST}
    try:
        for silo in HONEST:
            clients[silo].set_peers(job, keys)
            peers = world.consortium.nodes[silo].ctx.sessions.get(job).keys.peers
            assert peers.keys() == set(HONEST) - {silo}
    finally:
        _close(clients, list(HONEST), job)


def test_a_coordinator_signed_key_fails_the_certificate_check(world: World) -> None:
    """What SetPeers checks, on its own: the coordinator's certificate under its own name."""
    ca = certs.load_certificate(world.files[COORDINATOR].ca)
    own = _any_signer(COORDINATOR, world.files[COORDINATOR]).sign("j", JobKeys().public_bytes)
    with pytest.raises(AuthError, match="'coordinator' has role 'coordinator', not silo"):
        verify_session_key(ca, "j", COORDINATOR, own)
    rogue = world.files["silo-named-coordinator"]
    assert check_silo_certificate(ca, COORDINATOR, rogue.cert.read_text())  # a silo cert: passes
    bank = world.files["bank"].cert.read_text()
    assert (
        silo_certificate("bank", bank).subject
        == certs.load_certificate(world.files["bank"].cert).subject
    )


def test_a_silo_will_not_start_with_a_coordinator_certificate(world: World) -> None:
    with pytest.raises(ConfigError, match="has role 'coordinator', expected 'silo'"):
        SessionKeySigner.load("mallory", world.files["mallory"])


# --- policy: peers -------------------------------------------------------------------------------


def test_a_party_outside_peers_is_refused(world: World) -> None:
    clients, job = world.clients(), "peers-out"
    raw = {
        "name": "peers",
        "parties": {
            "telco": {"dataset": "main", "role": "active"},
            "lender": {"dataset": "main", "role": "passive"},
        },
        "steps": [PSI],
    }
    wire = parse_job_spec(raw, Path("job.toml")).to_wire(job)
    with pytest.raises(PolicyError, match="'telco'.*does not allow peer 'lender'"):
        clients["telco"].open_job(job, wire, resume=False)
    assert world.session_count("telco", job) == 0


def test_listed_peers_work_and_are_published(world: World) -> None:
    clients, job = world.clients(), "peers-in"
    raw = {
        "name": "peers",
        "parties": {
            "telco": {"dataset": "main", "role": "active"},
            "bank": {"dataset": "main", "role": "passive"},
            "bureau": {"dataset": "main", "role": "passive"},
        },
        "steps": [PSI],
    }
    wire = parse_job_spec(raw, Path("job.toml")).to_wire(job)
    parties = ["telco", "bank", "bureau"]
    keys = {p: clients[p].open_job(job, wire, resume=False)[0] for p in parties}
    try:
        clients["telco"].set_peers(job, keys)
    finally:
        _close(clients, parties, job)
    assert json.loads(clients["telco"].describe().policy_json)["peers"] == ["bank", "bureau"]
    assert json.loads(clients["bank"].describe().policy_json)["peers"] is None


@pytest.mark.parametrize(
    ("policy", "match"),
    [
        ("peers = []\n", "lists no party"),
        ('peers = ["coordinator"]\n', "lists the coordinator 'coordinator'"),
        ('peers = ["a b"]\n', "not a valid party name"),
        ('peers = "bank"\n', "must be a list"),
    ],
)
def test_bad_peers_are_config_errors(world: World, policy: str, match: str) -> None:
    text = world.consortium.configs["bank"].read_text() + policy
    path = world.root / "bad_peers.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"bad_peers.toml: \\[policy\\].*{match}"):
        load_silo_config(path)


# --- who may call a silo -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("caller", "match"),
    [
        ("bureau", "caller 'bureau' is not an identity this server answers"),
        ("mallory", "caller 'mallory' is not an identity this server answers"),
        ("silo-named-coordinator", "caller 'coordinator' holds a certificate with role 'silo'"),
        ("coordinator-without-role", "caller 'coordinator' holds a certificate with no fedsilo"),
    ],
)
def test_a_silo_answers_only_the_coordinator_role(world: World, caller: str, match: str) -> None:
    with pytest.raises(AuthError, match=match):
        world.client_as(caller, "bank").describe()


def test_the_coordinator_gets_in(world: World) -> None:
    assert world.client_as(COORDINATOR, "bank").describe().party == "bank"


# --- the coordinator's side ----------------------------------------------------------------------


def test_the_coordinator_refuses_a_non_silo_key_at_open_job(world: World) -> None:
    """A session key that comes with a coordinator-role certificate is no silo's key."""
    mallory = world.files["mallory"].cert.read_text()
    with pytest.raises(AuthError, match="'mallory' has role 'coordinator', not silo"):
        silo_certificate("mallory", mallory)

    class Impostor(SiloClient):
        """A client whose silo answers with a key backed by the coordinator's certificate."""

        def _call(self, fn: Any, request: Any, deadline: float) -> Any:
            resp = super()._call(fn, request, deadline)
            if hasattr(resp, "certificate_pem"):
                resp.certificate_pem = world.files["coordinator-named-bank"].cert.read_text()
            return resp

    clients, job = world.clients(), "impostor"
    impostor = Impostor("bank", clients["bank"].channel)
    try:
        with pytest.raises(AuthError, match="certificate of 'bank' has role 'coordinator'"):
            impostor.open_job(job, _wire("psi", job, None), resume=False)
    finally:
        _close(clients, ["bank"], job)


def test_certificate_role_is_exactly_one(world: World) -> None:
    roles = {
        name: certs.certificate_role(certs.load_certificate(world.files[name].cert))
        for name in ("bank", COORDINATOR, "mallory", "silo-named-coordinator")
    }
    assert roles == {
        "bank": "silo",
        COORDINATOR: "coordinator",
        "mallory": "coordinator",
        "silo-named-coordinator": "silo",
    }
    with pytest.raises(ConfigError, match="'ghost' carries no fedsilo role"):
        certs.certificate_role(certs.load_certificate(world.files["ghost"].cert))
    both = _issue_without_role(
        world.root / "certs",
        world.root / "both",
        "both",
        extra=(
            x509.ObjectIdentifier(f"{certs.ROLE_ARC}.1"),
            x509.ObjectIdentifier(f"{certs.ROLE_ARC}.2"),
        ),
    )
    with pytest.raises(ConfigError, match="'both' carries 2 fedsilo roles"):
        certs.certificate_role(certs.load_certificate(both.cert))
    with pytest.raises(ConfigError, match="role 'admin' is not one of silo, coordinator"):
        certs.issue(world.root / "certs", "admin", role="admin")
