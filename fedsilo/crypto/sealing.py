"""Silo-to-silo envelopes the coordinator relays but can neither read nor redirect.

Each silo makes a fresh X25519 key pair per job (:class:`JobKeys`); the coordinator distributes the
public halves. With mTLS the public keys are signed by the silos' certificate keys and checked by
each peer (:mod:`fedsilo.crypto.session_auth`), so a coordinator cannot swap them; in plaintext
mode it is trusted to relay them honestly.

A payload from silo A to silo B is encrypted with XChaCha20-Poly1305 (libsodium's IETF AEAD)
under a key derived from the X25519 agreement of A's secret key and B's public key. The
agreement alone is symmetric (A→B and B→A share it), so the *associated data* binds what the
envelope is: the job id, the sender, the recipient, the sender's step and a counter that grows
with every envelope A seals for B in the job. B authenticates all of them before it decodes a
byte, so a deviating coordinator cannot

- reflect A's envelope back to A as if it came from B (sender and recipient are bound),
- move an envelope to another job (the job id is bound, and keys are fresh per job anyway),
- replay or reorder envelopes of one sender (B refuses a counter it has already passed).

It can still withhold or delay envelopes (``SECURITY.md``, "what a malicious coordinator can
still do"). The envelope layout is ``counter (8 bytes) || len(step) (2) || step || nonce (24) ||
ciphertext``; the counter and the step travel in clear, authenticated by the AEAD.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
    crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
    crypto_box_beforenm,
)
from nacl.exceptions import CryptoError as NaclCryptoError
from nacl.public import PrivateKey, PublicKey
from nacl.utils import random as nacl_random

from fedsilo.errors import CryptoError, ProtocolError

__all__ = ["ENVELOPE_TAG", "JobKeys", "envelope_aad"]

#: domain separation of the envelope key and of the associated data (version 2: bound AAD)
ENVELOPE_TAG = b"fedsilo envelope v2"
_NONCE = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
_HEAD = struct.Struct(">QH")
_MAX_STEP = 200


def envelope_aad(job_id: str, sender: str, recipient: str, step: str, counter: int) -> bytes:
    """The associated data of one envelope: every field length-prefixed, so no two differ only
    in where one field ends and the next begins."""
    out = bytearray()
    for part in (ENVELOPE_TAG, job_id.encode(), sender.encode(), recipient.encode(), step.encode()):
        out += struct.pack(">I", len(part)) + part
    return bytes(out + struct.pack(">Q", counter))


@dataclass
class JobKeys:
    """This silo's key pair for one job, the public keys of its peers, and envelope counters.

    ``party`` and ``job_id`` name this silo and the job in every envelope's associated data;
    the session sets them when it opens.
    """

    secret: PrivateKey = field(default_factory=PrivateKey.generate)
    peers: dict[str, PublicKey] = field(default_factory=dict)
    party: str = ""
    job_id: str = ""
    _sent: dict[str, int] = field(default_factory=dict, repr=False)
    _received: dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def public_bytes(self) -> bytes:
        return bytes(self.secret.public_key)

    def set_peers(self, peers: dict[str, bytes]) -> None:
        try:
            self.peers = {name: PublicKey(raw) for name, raw in peers.items()}
        except (TypeError, ValueError, NaclCryptoError) as exc:
            raise ProtocolError(f"bad peer session key: {exc}") from None

    def _key(self, party: str) -> bytes:
        """The AEAD key shared with ``party``: the X25519 agreement, hashed with our tag."""
        return self.derive(party, ENVELOPE_TAG)

    def derive(self, party: str, tag: bytes) -> bytes:
        """32 bytes only this silo and ``party`` can compute in this job: keyed BLAKE2b of
        their X25519 agreement, personalised by ``tag`` (one tag per use of the secret)."""
        try:
            public = self.peers[party]
        except KeyError:
            raise ProtocolError(f"no session key for party '{party[:40]}' in this job") from None
        shared = crypto_box_beforenm(bytes(public), bytes(self.secret))
        return hashlib.blake2b(tag, key=shared, digest_size=32).digest()

    def seal(self, recipient: str, payload: bytes, step: str = "") -> bytes:
        """Encrypt ``payload`` for ``recipient``, bound to this job, both parties and ``step``."""
        if len(step) > _MAX_STEP:
            raise ProtocolError("step name too long for an envelope")
        key = self._key(recipient)
        counter = self._sent.get(recipient, 0) + 1
        self._sent[recipient] = counter
        aad = envelope_aad(self.job_id, self.party, recipient, step, counter)
        nonce = nacl_random(_NONCE)
        body = crypto_aead_xchacha20poly1305_ietf_encrypt(payload, aad, nonce, key)
        step_bytes = step.encode()
        return _HEAD.pack(counter, len(step_bytes)) + step_bytes + nonce + body

    def open(self, sender: str, sealed: bytes) -> bytes:
        """Authenticate and decrypt an envelope from ``sender`` to this silo; refuse one that
        was meant for someone else, for another job, or that comes again or out of order."""
        key = self._key(sender)
        counter, step, nonce, body = _split(sender, sealed)
        aad = envelope_aad(self.job_id, sender, self.party, step, counter)
        try:
            plain = bytes(crypto_aead_xchacha20poly1305_ietf_decrypt(body, aad, nonce, key))
        except NaclCryptoError:
            raise CryptoError(f"envelope from '{sender}' failed authentication") from None
        if counter <= self._received.get(sender, 0):
            raise ProtocolError(f"envelope from '{sender}' is replayed or out of order")
        self._received[sender] = counter
        return plain


def _split(sender: str, sealed: bytes) -> tuple[int, str, bytes, bytes]:
    """(counter, step, nonce, ciphertext) of an envelope; malformed ones fail authentication."""
    bad = CryptoError(f"envelope from '{sender}' failed authentication")
    if len(sealed) < _HEAD.size:
        raise bad
    counter, step_len = _HEAD.unpack_from(sealed)
    start = _HEAD.size + step_len
    if step_len > _MAX_STEP or len(sealed) < start + _NONCE:
        raise bad
    try:
        step = sealed[_HEAD.size : start].decode()
    except UnicodeDecodeError:
        raise bad from None
    return counter, step, sealed[start : start + _NONCE], sealed[start + _NONCE :]
