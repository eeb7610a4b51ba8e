"""Per-job session keys signed with the silos' certificate keys, so a coordinator cannot swap them.

The per-job X25519 public keys (:mod:`fedsilo.crypto.sealing`) reach the other silos through the
coordinator. Unsigned, a deviating coordinator could hand every silo a key of its own and open
every sealed payload. With mTLS each silo therefore signs, at ``OpenJob``, the statement

    (domain tag, job id, party, session public key)

with its certificate's private key (ECDSA P-256 / SHA-256) and returns the signature and its
certificate. The coordinator relays both unchanged in ``SetPeers``; it holds no silo's key, so it
cannot make a signature for a key of its own. Each silo accepts a peer's key only if the peer's
certificate chains to *its own* configured consortium CA, is valid now, names that party (CN and
the ``<party>.fedsilo.invalid`` SAN, the scheme of :mod:`fedsilo.crypto.certs`), carries the
*silo* role, and the signature verifies over this job id, that party and that key.

The role check is what keeps the coordinator from joining a job as a party: it holds a
consortium certificate too, and could sign a session key of its own under its own name (or under
a second name the CA gave it), then receive a horizontal job's CKKS secret key or lead a PSI.
Its certificate carries the coordinator role, so no silo accepts a key it signed.
:func:`check_silo_certificate` is the whole check of a peer certificate, for every other place a
silo trusts a peer's signature.

The tag and the job id keep a signature from being reused elsewhere: not for another protocol
message, not for another job (a replayed key of an old job is refused), and the party name keeps
one silo's signed key from being presented as another's.

Everything here is pure (no gRPC), so the checks are tested on their own.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fedsilo.crypto.certs import (
    TlsFiles,
    certificate_identity,
    certificate_role,
    identity_dns_name,
    load_certificate,
    load_private_key,
    verify_files,
)
from fedsilo.errors import AuthError, ConfigError

__all__ = [
    "SESSION_KEY_TAG",
    "SessionKey",
    "SessionKeySigner",
    "check_silo_certificate",
    "session_key_statement",
    "silo_certificate",
    "verify_peer_keys",
    "verify_session_key",
]

#: domain separation: these signatures mean "my session key for this job", nothing else.
SESSION_KEY_TAG = b"fedsilo session key v1"


@dataclass(frozen=True)
class SessionKey:
    """A party's session public key as relayed: with its signature and certificate under mTLS,
    with empty ones in plaintext mode (no certificate to sign with)."""

    public_key: bytes
    signature: bytes = b""
    certificate_pem: str = ""

    @property
    def signed(self) -> bool:
        return bool(self.signature or self.certificate_pem)


def session_key_statement(job_id: str, party: str, public_key: bytes) -> bytes:
    """The exact bytes signed: each field length-prefixed, so no two statements share bytes
    (``("ab", "c")`` and ``("a", "bc")`` sign differently)."""
    out = bytearray()
    for field in (SESSION_KEY_TAG, job_id.encode("utf-8"), party.encode("utf-8"), public_key):
        out += struct.pack(">I", len(field)) + field
    return bytes(out)


@dataclass(frozen=True)
class SessionKeySigner:
    """A silo's certificate and its private key: what it signs its session keys with."""

    party: str
    key: ec.EllipticCurvePrivateKey
    certificate_pem: str

    @classmethod
    def load(cls, party: str, files: TlsFiles) -> SessionKeySigner:
        """Load the silo's TLS files, checking they fit and that the certificate is a silo's
        certificate for ``party``: peers would refuse any other, so fail at start instead."""
        verify_files(files, name=party, role="silo")
        cert = load_certificate(files.cert)
        pem = cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
        return cls(party=party, key=load_private_key(files.key), certificate_pem=pem)

    def sign(self, job_id: str, public_key: bytes) -> SessionKey:
        statement = session_key_statement(job_id, self.party, public_key)
        signature = self.key.sign(statement, ec.ECDSA(hashes.SHA256()))
        return SessionKey(public_key, signature, self.certificate_pem)


def check_silo_certificate(
    ca: x509.Certificate, party: str, pem: str, *, now: datetime | None = None
) -> ec.EllipticCurvePublicKey:
    """The public key of ``party``'s certificate, once it is shown to be the consortium's silo
    certificate for that party and valid ``now``; AuthError naming the party otherwise."""
    cert = _parse(party, pem)
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise AuthError(f"certificate of '{party}' was not issued by this silo's CA") from None
    now = now or datetime.now(UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise AuthError(f"certificate of '{party}' is not valid now")
    _check_names(cert, party)
    _check_silo_role(cert, party)
    public = cert.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise AuthError(f"certificate of '{party}' has no EC key")
    return public


def silo_certificate(party: str, pem: str) -> x509.Certificate:
    """``pem`` parsed, if it names ``party`` and carries the silo role; its issuer and validity
    are not checked here (:func:`check_silo_certificate` checks all). AuthError otherwise."""
    cert = _parse(party, pem)
    _check_names(cert, party)
    _check_silo_role(cert, party)
    return cert


def _parse(party: str, pem: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise AuthError(f"certificate of '{party}' is not a PEM certificate") from None


def _check_silo_role(cert: x509.Certificate, party: str) -> None:
    """Only a silo certificate may back a party's key: never the coordinator's, never one
    without a role."""
    try:
        role = certificate_role(cert)
    except ConfigError:
        raise AuthError(f"certificate of '{party}' carries no fedsilo role") from None
    if role != "silo":
        raise AuthError(f"certificate of '{party}' has role '{role}', not silo")


def _check_names(cert: x509.Certificate, party: str) -> None:
    """The certificate must name ``party`` both ways a party is named: CN and identity SAN."""
    try:
        cn = certificate_identity(cert)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = san.get_values_for_type(x509.DNSName)
        wanted = identity_dns_name(party)
    except (ConfigError, x509.ExtensionNotFound, ValueError):
        raise AuthError(f"certificate of '{party}' does not name a party") from None
    if cn != party or wanted not in dns:
        raise AuthError(f"certificate of '{party}' belongs to '{cn}'")


def verify_session_key(
    ca: x509.Certificate,
    job_id: str,
    party: str,
    key: SessionKey,
    *,
    now: datetime | None = None,
) -> None:
    """Accept ``key`` as ``party``'s session key for ``job_id`` only if ``party``'s consortium
    certificate signed exactly that; raise AuthError naming the party otherwise."""
    if not key.signed:
        raise AuthError(f"session key of '{party}' is not signed (refused under mTLS)")
    public = check_silo_certificate(ca, party, key.certificate_pem, now=now)
    statement = session_key_statement(job_id, party, key.public_key)
    try:
        public.verify(key.signature, statement, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise AuthError(
            f"session key of '{party}': signature does not match this job and key"
        ) from None


def verify_peer_keys(
    ca: x509.Certificate,
    job_id: str,
    peers: Mapping[str, SessionKey],
    *,
    now: datetime | None = None,
) -> dict[str, bytes]:
    """Check every peer's key (all or nothing) and return the bare keys for ``JobKeys``."""
    for party in sorted(peers):
        verify_session_key(ca, job_id, party, peers[party], now=now)
    return {party: key.public_key for party, key in peers.items()}
