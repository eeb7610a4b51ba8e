"""Signed ledger heads: a silo's own word on how long its audit ledger was, kept by others.

A hash chain alone shows an edited or deleted middle row, but not a cut tail nor a chain rebuilt
from scratch by someone with write access to the silo's database. So at every job close a silo
signs the statement

    {tag, party, job id, seq, head hash, genesis hash, signed at}

(canonical JSON, ECDSA P-256 / SHA-256 with its certificate key, the key that signs its session
keys: :mod:`fedsilo.crypto.session_auth`) and hands it to the coordinator, which keeps it and
relays it to the job's other parties, which keep it too. A ledger shorter than a head someone
holds (truncated) or with another hash at that seq (rewritten) then fails ``fedsilo audit
verify``. The tag keeps these signatures apart from session-key signatures (whose statement is
length-prefixed binary, never ``{``). Pure code: no gRPC, no database.

In plaintext mode (no certificate) heads are unsigned: they still anchor the chain for whoever
keeps them, but anyone could have written them.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from fedsilo.crypto.certs import certificate_identity, certificate_role, identity_dns_name
from fedsilo.errors import AuthError, ConfigError, DataError

__all__ = [
    "LEDGER_HEAD_TAG",
    "LedgerHead",
    "SignedHead",
    "sign_head",
    "unsigned_head",
    "verify_head",
]

#: domain separation: these signatures mean "my audit ledger reached this head", nothing else.
LEDGER_HEAD_TAG = "fedsilo ledger head v1"
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
#: longest statement a silo accepts from a peer (a head is ~300 bytes).
_MAX_STATEMENT = 2048


@dataclass(frozen=True)
class LedgerHead:
    """What a head says: ``party``'s ledger had ``seq`` entries ending in ``hash``."""

    party: str
    job_id: str
    seq: int
    hash: str
    genesis: str
    signed_at: str

    def statement(self) -> bytes:
        """The exact bytes signed: sorted compact ASCII JSON, tag included."""
        fields = {"tag": LEDGER_HEAD_TAG, **self.__dict__}
        return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode(
            "ascii"
        )

    @classmethod
    def parse(cls, statement: bytes) -> LedgerHead:
        """Read a statement back; DataError if it is not a ledger head statement."""
        if len(statement) > _MAX_STATEMENT:
            raise DataError("ledger head statement is too long")
        try:
            raw = json.loads(statement.decode("ascii"))
            head = cls(
                str(raw["party"]),
                str(raw["job_id"]),
                int(raw["seq"]),
                str(raw["hash"]),
                str(raw["genesis"]),
                str(raw["signed_at"]),
            )
        except (UnicodeDecodeError, ValueError, TypeError, KeyError):
            raise DataError("ledger head statement is not a ledger head") from None
        if (
            not isinstance(raw, dict)
            or raw.get("tag") != LEDGER_HEAD_TAG
            or set(raw) != {"tag", *cls.__dataclass_fields__}
        ):
            raise DataError("ledger head statement is not a ledger head")
        if head.statement() != statement or head.seq < 0 or not _HEX64.match(head.hash):
            raise DataError("ledger head statement is not in canonical form")
        return head


@dataclass(frozen=True)
class SignedHead:
    """A head statement as relayed: with signature and certificate, or unsigned (plaintext)."""

    statement: bytes
    signature: bytes = b""
    certificate_pem: str = ""

    @property
    def head(self) -> LedgerHead:
        return LedgerHead.parse(self.statement)

    @property
    def signed(self) -> bool:
        return bool(self.signature or self.certificate_pem)

    def to_json(self) -> str:
        """The export format of ``fedsilo audit head`` and the coordinator's copy."""
        return json.dumps(
            {
                "statement": self.statement.decode("ascii"),
                "signature": base64.b64encode(self.signature).decode("ascii"),
                "certificate_pem": self.certificate_pem,
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> SignedHead:
        try:
            raw = json.loads(text)
            out = cls(
                str(raw["statement"]).encode("ascii"),
                base64.b64decode(str(raw["signature"]), validate=True),
                str(raw.get("certificate_pem", "")),
            )
        except (ValueError, TypeError, KeyError, UnicodeEncodeError, binascii.Error):
            raise DataError("not a signed ledger head (JSON from 'fedsilo audit head')") from None
        out.head  # noqa: B018 - parse now, so a bad statement fails here with its message
        return out


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def unsigned_head(party: str, job_id: str, seq: int, hash_: str, genesis: str) -> SignedHead:
    """A head without signature: what a plaintext silo (no certificate key) can offer."""
    return SignedHead(LedgerHead(party, job_id, seq, hash_, genesis, _now()).statement())


def sign_head(
    key: ec.EllipticCurvePrivateKey,
    certificate_pem: str,
    party: str,
    job_id: str,
    seq: int,
    hash_: str,
    genesis: str,
) -> SignedHead:
    """Sign ``party``'s head with its certificate key (the key of its session-key signer)."""
    statement = LedgerHead(party, job_id, seq, hash_, genesis, _now()).statement()
    signature = key.sign(statement, ec.ECDSA(hashes.SHA256()))
    return SignedHead(statement, signature, certificate_pem)


def _signer_key(ca: x509.Certificate, head: LedgerHead, pem: str) -> ec.EllipticCurvePublicKey:
    """The key of ``head.party``'s silo certificate, valid when the head was signed."""
    who = f"ledger head of '{head.party[:40]}'"
    try:
        cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, UnicodeEncodeError, InvalidSignature):
        raise AuthError(f"{who}: certificate was not issued by this silo's CA") from None
    try:
        at = datetime.fromisoformat(head.signed_at)
        names_ok = certificate_identity(cert) == head.party and identity_dns_name(
            head.party
        ) in cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value.get_values_for_type(x509.DNSName)
        role = certificate_role(cert)
    except (ConfigError, ValueError, x509.ExtensionNotFound):
        raise AuthError(f"{who}: certificate does not name a silo") from None
    if not names_ok or role != "silo":
        raise AuthError(f"{who}: certificate is not that silo's")
    if at.tzinfo is None or not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
        raise AuthError(f"{who}: certificate was not valid when the head was signed")
    public = cert.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise AuthError(f"{who}: certificate key is not an EC key")
    return public


def verify_head(ca: x509.Certificate, signed: SignedHead) -> LedgerHead:
    """The head, once its party's silo certificate (issued by ``ca``) is shown to have signed
    exactly it; AuthError otherwise (unsigned heads included)."""
    head = signed.head
    if not signed.signed:
        raise AuthError(f"ledger head of '{head.party[:40]}' is not signed")
    public = _signer_key(ca, head, signed.certificate_pem)
    try:
        public.verify(signed.signature, signed.statement, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise AuthError(f"ledger head of '{head.party[:40]}': signature does not match") from None
    return head
