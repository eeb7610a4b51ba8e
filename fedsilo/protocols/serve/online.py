"""Online scoring's pieces without a server: keyed pseudonyms, sealed queries and answers.

* **Pseudonyms.** A served model's silos agree a 32-byte key at its ``serve`` step (the label
  holder draws it and seals it to each passive silo; the coordinator relays it unread). An id
  travels as ``HMAC-SHA256(key, id)`` cut to ``SERVING_PSEUDONYM_BYTES``: a passive silo finds
  its own record by it, the coordinator cannot invert or test it (it lacks the key).
* **Serving keys.** Each pair (label holder, passive silo) derives a 32-byte key from the
  X25519 agreement of the ``serve`` job's session keys (signed by their certificates under
  mTLS). Queries and answers are XChaCha20-Poly1305 under it, bound to the serving, both
  parties, the direction and the query id, so the coordinator can neither read, redirect nor
  alter them; it sees query ids, row counts and timing.
* **Messages.** ``serve.key`` (the pseudonym key), ``serve.query`` (pseudonyms and a one-time
  label) and ``serve.part`` (per row: whether the silo holds the id, and its part of the
  prediction, as batch scoring's ``predict.part``). ``docs/leakage.md`` has their rows.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

import numpy as np
from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
    crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
)
from nacl.exceptions import CryptoError as NaclCryptoError
from nacl.utils import random as nacl_random

from fedsilo import settings
from fedsilo.crypto.sealing import envelope_aad
from fedsilo.errors import CryptoError, ProtocolError
from fedsilo.leakage import register_kind
from fedsilo.message import Message, decode, encode

__all__ = [
    "CHANNEL_TAG",
    "KEY",
    "KEY_BYTES",
    "PART",
    "QUERY",
    "open_sealed",
    "pseudonyms",
    "query_message",
    "read_query",
    "seal",
]

KEY = register_kind(
    "serve.key",
    reveals="to a passive silo of a served model: the model's 32-byte pseudonym key, drawn at "
    "random by the label holder; nothing about data",
)
QUERY = register_kind(
    "serve.query",
    reveals="to a passive silo: keyed pseudonyms of the ids being scored online and a one-time "
    "label; a pseudonym it holds tells it that this one of its own records is being scored "
    "(and when, and how often); one it does not hold names no record of its own, but the silo "
    "holds the key and can test guessed ids against it",
)
PART = register_kind(
    "serve.part",
    reveals="to the label holder, for the rows it asked online: whether this silo holds each "
    "id, and for the rows it holds its part of the prediction as batch scoring reveals it "
    "(SecureBoost: the side each row takes at the split nodes this silo owns; vertical LR: its "
    "partial linear score, masked so that with two or more passive silos only their sum is "
    "revealed); counted per interval in the ledger",
)

#: bytes of the pseudonym key and of each serving key
KEY_BYTES = 32
#: personalisation of the serving key a label holder and a passive silo derive in the serve job
CHANNEL_TAG = b"fedsilo.serve.channel.v1"
_NONCE = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES


def pseudonyms(key: bytes, ids: Sequence[str]) -> np.ndarray:
    """``(len(ids), SERVING_PSEUDONYM_BYTES)`` uint8: each id's keyed pseudonym."""
    if len(key) != KEY_BYTES:
        raise CryptoError("pseudonym key must be 32 bytes")
    width = settings.SERVING_PSEUDONYM_BYTES
    out = bytearray()
    for i in ids:
        out += hmac.new(key, i.encode("utf-8"), hashlib.sha256).digest()[:width]
    return np.frombuffer(bytes(out), dtype=np.uint8).reshape(len(ids), width)


def _aad(serving_id: str, sender: str, recipient: str, kind: str, query_id: int) -> bytes:
    return envelope_aad(serving_id, sender, recipient, kind, query_id)


def seal(
    key: bytes, msg: Message, *, serving_id: str, sender: str, recipient: str, query_id: int
) -> bytes:
    """``nonce || ciphertext`` of ``msg`` for ``recipient``, bound to all the named fields."""
    aad = _aad(serving_id, sender, recipient, msg.kind, query_id)
    nonce = nacl_random(_NONCE)
    return nonce + crypto_aead_xchacha20poly1305_ietf_encrypt(encode(msg), aad, nonce, key)


def open_sealed(
    key: bytes,
    sealed: bytes,
    kind: str,
    *,
    serving_id: str,
    sender: str,
    recipient: str,
    query_id: int,
) -> Message:
    """The message ``sender`` sealed for us as :func:`seal` did; anything else is refused."""
    aad = _aad(serving_id, sender, recipient, kind, query_id)
    try:
        plain = crypto_aead_xchacha20poly1305_ietf_decrypt(
            sealed[_NONCE:], aad, sealed[:_NONCE], key
        )
    except (NaclCryptoError, ValueError):
        raise CryptoError(f"serving message from '{sender[:40]}' failed authentication") from None
    return decode(bytes(plain)).expect(kind)


def query_message(pseudo: np.ndarray, label: str) -> Message:
    return Message(QUERY, meta={"label": label}, arrays={"pseudonyms": pseudo})


def read_query(msg: Message) -> tuple[np.ndarray, str]:
    """``(pseudonyms, label)`` of a query, checked for shape."""
    pseudo = msg.expect(QUERY).array("pseudonyms")
    width = settings.SERVING_PSEUDONYM_BYTES
    if pseudo.dtype != np.uint8 or pseudo.ndim != 2 or pseudo.shape[1] != width:
        raise ProtocolError("serving query: pseudonyms must be rows of 16 bytes")
    if pseudo.shape[0] > settings.SERVING_MAX_BATCH_ROWS:
        raise ProtocolError("serving query: more rows than SERVING_MAX_BATCH_ROWS")
    label = msg.meta.get("label")
    if not isinstance(label, str) or not label:
        raise ProtocolError("serving query has no label")
    return pseudo, label
