"""Silo-to-silo envelopes the coordinator relays but cannot read.

Each silo makes a fresh X25519 key pair per job (:class:`JobKeys`); the coordinator distributes the
public halves. A payload from silo A to silo B is encrypted and authenticated with libsodium's
``crypto_box`` (X25519 + XSalsa20-Poly1305) under A's secret key and B's public key: B knows it came
from A, and the coordinator, which holds neither secret key, sees only length. With mTLS the public
keys are signed by the silos' certificate keys and checked by each peer
(:mod:`fedsilo.crypto.session_auth`), so a coordinator cannot swap them; in plaintext mode it is
trusted to relay them honestly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nacl.exceptions import CryptoError as NaclCryptoError
from nacl.public import Box, PrivateKey, PublicKey

from fedsilo.errors import CryptoError, ProtocolError

__all__ = ["JobKeys"]


@dataclass
class JobKeys:
    """This silo's key pair for one job, and the public keys of its peers."""

    secret: PrivateKey = field(default_factory=PrivateKey.generate)
    peers: dict[str, PublicKey] = field(default_factory=dict)

    @property
    def public_bytes(self) -> bytes:
        return bytes(self.secret.public_key)

    def set_peers(self, peers: dict[str, bytes]) -> None:
        try:
            self.peers = {name: PublicKey(raw) for name, raw in peers.items()}
        except (TypeError, ValueError, NaclCryptoError) as exc:
            raise ProtocolError(f"bad peer session key: {exc}") from None

    def _box(self, party: str) -> Box:
        try:
            return Box(self.secret, self.peers[party])
        except KeyError:
            raise ProtocolError(f"no session key for party '{party}' in this job") from None

    def seal(self, recipient: str, payload: bytes) -> bytes:
        return bytes(self._box(recipient).encrypt(payload))

    def open(self, sender: str, sealed: bytes) -> bytes:
        try:
            return bytes(self._box(sender).decrypt(sealed))
        except NaclCryptoError:
            raise CryptoError(f"envelope from '{sender}' failed authentication") from None
