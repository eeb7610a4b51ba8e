"""mTLS over real gRPC on loopback: who gets in, who does not, and how keys are stored."""

from __future__ import annotations

import ipaddress
import stat
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from fedsilo.crypto import certs, tls
from fedsilo.errors import ConfigError

pytestmark = pytest.mark.e2e

WHOAMI = "/fedsilo.test.Echo/WhoAmI"
STREAM = "/fedsilo.test.Echo/Count"
COORDINATOR = "coordinator"
SILO = "bank"


class _Echo(grpc.GenericRpcHandler):
    """Answers WhoAmI with the caller's verified identity, Count with a short stream."""

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        if details.method == WHOAMI:
            return grpc.unary_unary_rpc_method_handler(
                lambda req, ctx: (tls.peer_identity(ctx) or "").encode()
            )
        if details.method == STREAM:
            return grpc.unary_stream_rpc_method_handler(lambda req, ctx: iter([b"1", b"2"]))
        return None


def _role(party: str) -> str:
    return "coordinator" if party == COORDINATOR else "silo"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, certs.TlsFiles]:
    """The consortium CA with a silo, its coordinator and another member; plus a foreign CA."""
    home = tmp_path_factory.mktemp("pki")
    certs.init_ca(home / "consortium", name="test consortium")
    files = {
        p: certs.issue(home / "consortium", p, role=_role(p)) for p in (SILO, COORDINATOR, "bureau")
    }
    certs.init_ca(home / "foreign", name="another consortium")
    files["foreign"] = certs.issue(home / "foreign", COORDINATOR, role="coordinator")
    return files


@pytest.fixture(scope="module")
def silo(pki: dict[str, certs.TlsFiles]) -> Iterator[str]:
    """A silo-like server holding the 'bank' certificate that answers only the coordinator."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4),
        interceptors=[tls.IdentityInterceptor(allowed={COORDINATOR}, role="coordinator")],
    )
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    server.add_generic_rpc_handlers([_Echo()])
    f = pki[SILO]
    port = server.add_secure_port(
        "127.0.0.1:0", tls.server_credentials(ca=f.ca, cert=f.cert, key=f.key)
    )
    server.start()
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    yield f"127.0.0.1:{port}"
    server.stop(None)


def _channel(target: str, files: certs.TlsFiles, *, peer: str = SILO) -> grpc.Channel:
    creds = tls.channel_credentials(ca=files.ca, cert=files.cert, key=files.key)
    return grpc.secure_channel(target, creds, options=tls.identity_options(peer))


def _whoami(channel: grpc.Channel) -> str:
    with channel:
        return channel.unary_unary(WHOAMI)(b"", timeout=10).decode()


def _health(channel: grpc.Channel) -> int:
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(), timeout=10).status


def _code(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()  # type: ignore[operator]
    return info.value.code()


# --- over the wire -------------------------------------------------------------------------------


def test_right_identity_gets_in(silo: str, pki: dict[str, certs.TlsFiles]) -> None:
    assert _whoami(_channel(silo, pki[COORDINATOR])) == COORDINATOR
    assert _health(_channel(silo, pki[COORDINATOR])) == health_pb2.HealthCheckResponse.SERVING
    with _channel(silo, pki[COORDINATOR]) as ch:
        assert list(ch.unary_stream(STREAM)(b"", timeout=10)) == [b"1", b"2"]


def test_no_client_certificate_is_refused(silo: str, pki: dict[str, certs.TlsFiles]) -> None:
    creds = grpc.ssl_channel_credentials(root_certificates=pki[SILO].ca.read_bytes())
    ch = grpc.secure_channel(silo, creds, options=tls.identity_options(SILO))
    assert _code(lambda: _whoami(ch)) == grpc.StatusCode.UNAVAILABLE


def test_certificate_from_another_ca_is_refused(silo: str, pki: dict[str, certs.TlsFiles]) -> None:
    foreign = pki["foreign"]  # CN=coordinator, but signed by another CA
    creds = grpc.ssl_channel_credentials(
        root_certificates=pki[SILO].ca.read_bytes(),  # trusts the silo, so only its cert is wrong
        private_key=foreign.key.read_bytes(),
        certificate_chain=foreign.cert.read_bytes(),
    )
    ch = grpc.secure_channel(silo, creds, options=tls.identity_options(SILO))
    assert _code(lambda: _whoami(ch)) == grpc.StatusCode.UNAVAILABLE


def test_other_consortium_member_is_refused(silo: str, pki: dict[str, certs.TlsFiles]) -> None:
    """A valid certificate of the wrong identity: refused for every method, health included."""
    assert _code(lambda: _whoami(_channel(silo, pki["bureau"]))) == grpc.StatusCode.UNAUTHENTICATED
    assert _code(lambda: _health(_channel(silo, pki["bureau"]))) == grpc.StatusCode.UNAUTHENTICATED
    with _channel(silo, pki["bureau"]) as ch:
        stream = ch.unary_stream(STREAM)(b"", timeout=10)
        assert _code(lambda: list(stream)) == grpc.StatusCode.UNAUTHENTICATED


def test_coordinator_refuses_a_silo_with_another_identity(
    silo: str, pki: dict[str, certs.TlsFiles]
) -> None:
    """The server holds bank's certificate: dialling it as 'bureau' fails the name check."""
    ch = _channel(silo, pki[COORDINATOR], peer="bureau")
    assert _code(lambda: _whoami(ch)) == grpc.StatusCode.UNAVAILABLE


def test_host_entries_do_not_stand_in_for_an_identity(
    tmp_path: Path, pki: dict[str, certs.TlsFiles]
) -> None:
    """Even a host named like a party gives no identity: only the reserved-suffix name does."""
    certs.init_ca(tmp_path)
    with pytest.raises(ConfigError, match="not a DNS name"):
        certs.issue(tmp_path, "mallory", role="silo", hosts=("bank.fedsilo.invalid",))
    files = certs.issue(tmp_path, "mallory", role="silo", hosts=("bank", "127.0.0.1"))
    client = certs.issue(tmp_path, "second_lender.eu", role="silo")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers([_Echo()])
    port = server.add_secure_port(
        "127.0.0.1:0", tls.server_credentials(ca=files.ca, cert=files.cert, key=files.key)
    )
    server.start()
    try:
        ch = _channel(f"127.0.0.1:{port}", client, peer="bank")
        assert _code(lambda: _whoami(ch)) == grpc.StatusCode.UNAVAILABLE
        assert _whoami(_channel(f"127.0.0.1:{port}", client, peer="mallory")) == "second_lender.eu"
    finally:
        server.stop(None)


def test_interceptor_needs_someone_to_allow() -> None:
    with pytest.raises(ConfigError):
        tls.IdentityInterceptor(allowed=set(), role="coordinator")
    with pytest.raises(ConfigError, match="role 'party'"):
        tls.IdentityInterceptor(allowed={COORDINATOR}, role="party")


# --- files and certificate contents --------------------------------------------------------------


def test_keys_are_private_files(tmp_path: Path) -> None:
    ca = certs.init_ca(tmp_path)
    party = certs.issue(tmp_path, "lender", role="silo")
    for key in (ca.key, party.key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    for cert in (ca.cert, party.cert):
        assert stat.S_IMODE(cert.stat().st_mode) == 0o644
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind


def test_existing_keys_are_not_replaced_without_force(tmp_path: Path) -> None:
    certs.init_ca(tmp_path)
    first = certs.issue(tmp_path, "lender", role="silo")
    key_before = first.key.read_bytes()
    with pytest.raises(ConfigError, match="already exists"):
        certs.issue(tmp_path, "lender", role="silo")
    with pytest.raises(ConfigError, match="already exists"):
        certs.init_ca(tmp_path)
    assert first.key.read_bytes() == key_before
    again = certs.issue(tmp_path, "lender", role="silo", force=True)
    assert again.key.read_bytes() != key_before
    assert stat.S_IMODE(again.key.stat().st_mode) == 0o600
    assert certs.verify_files(again, name="lender") == "lender"


def test_certificate_contents(pki: dict[str, certs.TlsFiles]) -> None:
    cert = x509.load_pem_x509_certificate(pki[SILO].cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"bank.fedsilo.invalid", "localhost"}
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    silo_role = x509.ObjectIdentifier(f"{certs.ROLE_ARC}.1")
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH, silo_role}
    assert certs.certificate_role(cert) == "silo"
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert certs.certificate_identity(cert) == SILO


def test_one_line_errors(tmp_path: Path, pki: dict[str, certs.TlsFiles]) -> None:
    with pytest.raises(ConfigError, match="no consortium CA") as info:
        certs.issue(tmp_path / "empty", "bank", role="silo")
    assert "\n" not in str(info.value)
    certs.init_ca(tmp_path)
    for bad in ("", "a b", "../x", "x" * 64, "a..b"):
        with pytest.raises(ConfigError, match="not valid"):
            certs.issue(tmp_path, bad, role="silo")
    mixed = certs.TlsFiles(ca=pki[SILO].ca, cert=pki["foreign"].cert, key=pki["foreign"].key)
    with pytest.raises(ConfigError, match="not issued by the CA"):
        tls.server_credentials(ca=mixed.ca, cert=mixed.cert, key=mixed.key)
    wrong_key = certs.TlsFiles(ca=pki[SILO].ca, cert=pki[SILO].cert, key=pki["bureau"].key)
    with pytest.raises(ConfigError, match="is not the key of"):
        tls.channel_credentials(ca=wrong_key.ca, cert=wrong_key.cert, key=wrong_key.key)
    with pytest.raises(ConfigError, match="cannot read"):
        tls.channel_credentials(ca=tmp_path / "nope.pem", cert=pki[SILO].cert, key=pki[SILO].key)
