"""The consortium CA and party certificates behind fedsilo's mTLS (``fedsilo certs ...``).

One private CA per consortium signs one certificate per party (each silo and the coordinator).
Keys are ECDSA P-256: supported by every TLS stack gRPC ships with (BoringSSL and OpenSSL
builds), small, and fast to handshake; Ed25519 certificates are not accepted everywhere yet.

What a party certificate carries, and why (see :mod:`fedsilo.crypto.tls` for how it is checked):

- ``CN = <party>``: the identity a silo authorises callers by (gRPC exposes it as
  ``x509_common_name``).
- ``SAN DNS = <party>.fedsilo.invalid``: the identity a caller checks servers by, through
  gRPC's target name override. It lives under the reserved ``.invalid`` top-level domain
  (RFC 6761), so it can never collide with a real host name in ``hosts``: a certificate whose
  hosts list happens to contain "bank" still cannot pass for the party "bank".
- ``SAN`` entries for ``hosts`` (``localhost`` and ``127.0.0.1`` by default): so ordinary tools
  (``openssl s_client``, health probes) can talk to the node by address.
- ``ExtendedKeyUsage = serverAuth, clientAuth, <role>``: a silo is a server, the coordinator is
  a client of the silos and a server for the CLI; one certificate serves both. ``<role>`` is
  exactly one of fedsilo's role OIDs, ``ROLE_ARC.1`` (silo) or ``ROLE_ARC.2`` (coordinator),
  under the arc ``2.25.<UUID as an integer>`` (ITU-T X.667: a UUID arc needs no registration).
  The role is what keeps the coordinator out of every job: a silo answers only a caller whose
  certificate has the coordinator role, and accepts a party's session key only from a
  certificate with the silo role (:mod:`fedsilo.crypto.session_auth`). It is an EKU, so the CA
  signs it like the name, TLS stacks ignore an unknown EKU purpose, and ``cryptography`` reads
  it back (:func:`certificate_role`). The role is chosen when the certificate is issued
  (``issue(..., role=...)``, ``fedsilo certs issue --role``), never defaulted.

Layout of a certificate folder: ``ca.pem`` / ``ca.key`` and ``<party>.pem`` / ``<party>.key``.
Private keys are unencrypted PKCS#8 PEM, protected by file mode 0600; they are written to a
temporary file and linked into place, so a crash never leaves half a key and an existing key is
never replaced unless ``force=True`` (replacing a key locks the old holder out).
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedsilo import settings
from fedsilo.errors import ConfigError

__all__ = [
    "CA_DAYS",
    "CERT_DAYS",
    "DEFAULT_HOSTS",
    "ROLES",
    "ROLE_ARC",
    "CaFiles",
    "TlsFiles",
    "certificate_identity",
    "certificate_role",
    "identity_dns_name",
    "init_ca",
    "issue",
    "load_certificate",
    "load_private_key",
    "verify_files",
]

#: validity of the CA and of party certificates, and the hosts every certificate answers to
#: besides its identity: ``settings.CERT_*`` (documented there).
CA_DAYS: int = settings.CERT_CA_DAYS
CERT_DAYS: int = settings.CERT_DAYS
DEFAULT_HOSTS: tuple[str, ...] = settings.CERT_DEFAULT_HOSTS
#: suffix of the DNS identity of a party; a reserved TLD, never a real host.
IDENTITY_SUFFIX = ".fedsilo.invalid"
#: the same alphabet as party names in configs, capped at a DNS label's 63 characters.
_PARTY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,62}\Z")
#: tolerated clock difference between parties when a certificate starts being valid.
_CLOCK_SKEW = timedelta(minutes=5)
#: fedsilo's private OID arc, ``2.25.<UUID 713073ef-67d4-46f2-b5ac-31b85078273f as an integer>``.
ROLE_ARC = "2.25.150454345217674009543788703487503116095"
#: the roles a consortium certificate can carry, and the EKU purpose OID that marks each.
_ROLE_OIDS: dict[str, x509.ObjectIdentifier] = {
    "silo": x509.ObjectIdentifier(f"{ROLE_ARC}.1"),
    "coordinator": x509.ObjectIdentifier(f"{ROLE_ARC}.2"),
}
ROLES: tuple[str, ...] = tuple(_ROLE_OIDS)


@dataclass(frozen=True)
class CaFiles:
    """Where the consortium CA lives: its certificate (shared) and key (kept by its operator)."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class TlsFiles:
    """What one party needs for mTLS: the CA certificate, its own certificate and key."""

    ca: Path
    cert: Path
    key: Path


def identity_dns_name(party: str) -> str:
    """The SAN DNS name that proves a server is ``party`` (what callers verify)."""
    return _check_party(party) + IDENTITY_SUFFIX


def _check_party(name: str) -> str:
    if not _PARTY_RE.match(name) or ".." in name or name.endswith("."):
        raise ConfigError(
            f"party name {name!r} is not valid for a certificate "
            "(letters, digits, '_', '.', '-'; at most 63 characters)"
        )
    return name


# --- creating ------------------------------------------------------------------------------------


def init_ca(
    directory: str | os.PathLike[str],
    *,
    name: str = "fedsilo consortium CA",
    days: int = CA_DAYS,
    force: bool = False,
) -> CaFiles:
    """Create the consortium CA (``ca.pem``, ``ca.key``) in ``directory``.

    Refuses to replace an existing CA key without ``force``: a new CA invalidates every
    certificate issued so far.
    """
    _check_days(days)
    folder = _folder(directory)
    files = CaFiles(cert=folder / "ca.pem", key=folder / "ca.key")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        _builder(subject, subject, key.public_key(), now, now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .sign(key, hashes.SHA256())
    )
    _write_key(files.key, key, force=force, hint="a consortium CA")
    _write_public(files.cert, cert.public_bytes(serialization.Encoding.PEM))
    return files


def issue(
    directory: str | os.PathLike[str],
    name: str,
    *,
    role: str,
    days: int = CERT_DAYS,
    hosts: Sequence[str] = DEFAULT_HOSTS,
    force: bool = False,
) -> TlsFiles:
    """Issue ``<name>.pem`` / ``<name>.key`` for party ``name``, signed by the CA in ``directory``.

    ``role`` is ``"silo"`` or ``"coordinator"`` and has no default: a wrong default would let a
    coordinator hold a silo's certificate. ``hosts`` are the DNS names and IP addresses the party
    is reached at; they may not use the identity suffix. The certificate never outlives the CA.
    """
    _check_party(name)
    role_oid = _role_oid(role)
    _check_days(days)
    folder = Path(directory)
    ca_cert, ca_key = _load_ca(folder)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    not_after = min(now + timedelta(days=days), ca_cert.not_valid_after_utc)
    cert = (
        _builder(subject, ca_cert.subject, key.public_key(), now, not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH, role_oid]
            ),
            critical=False,
        )
        .add_extension(_subject_alt_names(name, hosts), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(ca=folder / "ca.pem", cert=folder / f"{name}.pem", key=folder / f"{name}.key")
    _write_key(files.key, key, force=force, hint=f"party {name!r}")
    _write_public(files.cert, cert.public_bytes(serialization.Encoding.PEM))
    return files


def _role_oid(role: str) -> x509.ObjectIdentifier:
    oid = _ROLE_OIDS.get(role)
    if oid is None:
        raise ConfigError(f"certificate role {role!r} is not one of {', '.join(ROLES)}")
    return oid


def _check_days(days: int) -> None:
    if days < 1:
        raise ConfigError(f"certificate validity must be at least one day, got {days}")


def _folder(directory: str | os.PathLike[str]) -> Path:
    folder = Path(directory)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create certificate folder {folder}: {err.strerror}") from None
    return folder


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    not_before: datetime,
    not_after: datetime,
) -> x509.CertificateBuilder:
    """Fields every certificate shares: random serial, clock-skew margin, key identifier."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(secrets.randbits(159) | 1)
        .not_valid_before(not_before - _CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _subject_alt_names(name: str, hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = [x509.DNSName(identity_dns_name(name))]
    for host in dict.fromkeys(hosts):  # keep order, drop duplicates
        entries.append(_host_entry(host))
    return x509.SubjectAlternativeName(entries)


def _host_entry(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    if host.lower().endswith(IDENTITY_SUFFIX) or not re.fullmatch(r"[A-Za-z0-9_.-]+", host):
        raise ConfigError(f"host {host!r} is not a DNS name or IP address usable in a certificate")
    return x509.DNSName(host)


# --- files ---------------------------------------------------------------------------------------


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey, *, force: bool, hint: str) -> None:
    """Write a private key with mode 0600, atomically; never clobber one unless ``force``."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tmp = _temp_file(path, pem, mode=0o600)
    try:
        if force:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # atomic, and fails if the key exists
    except FileExistsError:
        raise ConfigError(
            f"{path} already exists: refusing to replace the key of {hint} (use --force)"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)


def _write_public(path: Path, data: bytes) -> None:
    os.replace(_temp_file(path, data, mode=0o644), path)


def _temp_file(path: Path, data: bytes, *, mode: int) -> Path:
    """A fully written, fsynced file beside ``path`` with ``mode`` set before any byte lands."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


# --- reading and checking ----------------------------------------------------------------------


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read {what} {path}: {err.strerror}") from None


def load_certificate(path: Path, what: str = "certificate") -> x509.Certificate:
    """Parse a PEM certificate; a one-line ConfigError if it is missing or not one."""
    try:
        return x509.load_pem_x509_certificate(_read(path, what))
    except ValueError:
        raise ConfigError(f"{path} is not a PEM certificate") from None


def load_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """A party's or the CA's EC private key; a one-line ConfigError if it is not one."""
    try:
        key = serialization.load_pem_private_key(_read(path, "private key"), password=None)
    except (ValueError, TypeError):
        raise ConfigError(f"{path} is not an unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{path} is not an EC private key")
    return key


def _load_ca(folder: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = folder / "ca.pem", folder / "ca.key"
    if not cert_path.exists() or not key_path.exists():
        raise ConfigError(f"no consortium CA in {folder} (run `fedsilo certs init {folder}` first)")
    cert, key = load_certificate(cert_path, "CA certificate"), load_private_key(key_path)
    if cert.public_key() != key.public_key():
        raise ConfigError(f"{key_path} is not the key of {cert_path}")
    return cert, key


def certificate_identity(cert: x509.Certificate) -> str:
    """The party a certificate names (its single CN)."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1 or not isinstance(names[0].value, str):
        raise ConfigError("a party certificate must have exactly one common name")
    return names[0].value


def certificate_role(cert: x509.Certificate) -> str:
    """The fedsilo role a certificate carries: ``"silo"`` or ``"coordinator"``.

    ConfigError unless it carries exactly one: a certificate with none (not issued by fedsilo, or
    before roles existed) or with both may be neither a party nor the coordinator.
    """
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except (x509.ExtensionNotFound, ValueError):
        usages = x509.ExtendedKeyUsage([])
    roles = [role for role, oid in _ROLE_OIDS.items() if oid in usages]
    if len(roles) != 1:
        what = "no fedsilo role" if not roles else f"{len(roles)} fedsilo roles"
        raise ConfigError(f"certificate of {_subject_label(cert)} carries {what} (reissue it)")
    return roles[0]


def _subject_label(cert: x509.Certificate) -> str:
    """How errors name a certificate: its CN if it has exactly one, else its whole subject."""
    try:
        return repr(certificate_identity(cert))
    except ConfigError:
        return repr(cert.subject.rfc4514_string()[:80])


def verify_files(files: TlsFiles, *, name: str | None = None, role: str | None = None) -> str:
    """Check a party's files fit together before gRPC sees them; return the party's identity.

    gRPC reports a wrong key or a certificate from another CA only as a failed handshake on the
    *other* side; checking here turns those into one-line errors at start-up. ``name`` and
    ``role``, when given, must be what the certificate carries.
    """
    ca, cert = load_certificate(files.ca, "CA certificate"), load_certificate(files.cert)
    key = load_private_key(files.key)
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise ConfigError(f"{files.cert} was not issued by the CA in {files.ca}") from None
    if cert.public_key() != key.public_key():
        raise ConfigError(f"{files.key} is not the key of {files.cert}")
    now = datetime.now(UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise ConfigError(
            f"{files.cert} is valid only from {cert.not_valid_before_utc:%Y-%m-%d} "
            f"to {cert.not_valid_after_utc:%Y-%m-%d}"
        )
    identity = certificate_identity(cert)
    if name is not None and identity != name:
        raise ConfigError(f"{files.cert} names {identity!r}, expected {name!r}")
    if role is not None and certificate_role(cert) != role:
        raise ConfigError(f"{files.cert} has role {certificate_role(cert)!r}, expected {role!r}")
    return identity
