"""The step envelope: how one protocol step travels between coordinator and silo.

A step request carries the coordinator's JSON ``meta`` and the sealed envelopes addressed to the
silo (``inbox``); a step reply carries what the silo releases to the coordinator (``meta``) and
sealed envelopes for other silos (``outbox``). Both are :class:`fedsilo.message.Message` values,
encoded once and streamed as frames of ``settings.CHUNK_BYTES``. This module is the single home of
that framing for both the silo server and the coordinator client.

Some protocols need the coordinator to compute on data it cannot read: it sums CKKS ciphertexts
under a public context (horizontal training). For those, a reply may carry one unsealed
``plain`` message *released to the coordinator*, and a request one unsealed ``plain`` message
*from the coordinator* (the sum it computed). Silos record what they release in their ledger
like any other message.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from fedsilo import settings
from fedsilo.errors import ProtocolError
from fedsilo.message import Message, decode, encode

__all__ = ["Envelope", "StepPayload", "chunks", "join_chunks", "pack_step", "unpack_step"]

_FROM = "from:"
_TO = "to:"
_PLAIN = "plain"


@dataclass(frozen=True)
class Envelope:
    """Sealed bytes from ``sender`` to ``recipient``; the coordinator can read neither."""

    sender: str
    recipient: str
    sealed: bytes


@dataclass
class StepPayload:
    """Coordinator-visible meta plus sealed envelopes (inbox on requests, outbox on replies)."""

    meta: dict[str, Any] = field(default_factory=dict)
    envelopes: list[Envelope] = field(default_factory=list)
    #: an unsealed message the coordinator reads (released by a silo, or sent by the coordinator)
    plain: Message | None = None

    def outbox_for(self, party: str) -> list[Envelope]:
        return [e for e in self.envelopes if e.recipient == party]


def pack_step(payload: StepPayload, *, request: bool) -> bytes:
    """Encode a request (envelopes keyed by sender) or a reply (keyed by recipient)."""
    blobs: dict[str, bytes] = {}
    for env in payload.envelopes:
        key = f"{_FROM}{env.sender}" if request else f"{_TO}{env.recipient}"
        if key in blobs:
            raise ProtocolError(f"two envelopes under '{key}' in one step")
        blobs[key] = env.sealed
    if payload.plain is not None:
        blobs[_PLAIN] = encode(payload.plain)
    kind = "step.request" if request else "step.reply"
    return encode(Message(kind, meta=payload.meta, blobs=blobs))


def unpack_step(data: bytes, *, request: bool, party: str) -> StepPayload:
    """Decode a step payload; ``party`` is the receiving silo (requests) or the sending one."""
    msg = decode(data).expect("step.request" if request else "step.reply")
    prefix = _FROM if request else _TO
    out = StepPayload(meta=msg.meta)
    for key, sealed in msg.blobs.items():
        if key == _PLAIN:
            out.plain = decode(sealed)
            continue
        if not key.startswith(prefix) or len(key) == len(prefix):
            raise ProtocolError(f"unexpected envelope key '{key[:40]}'")
        other = key[len(prefix) :]
        env = Envelope(other, party, sealed) if request else Envelope(party, other, sealed)
        out.envelopes.append(env)
    return out


def chunks(data: bytes) -> Iterator[bytes]:
    """Split into frames of at most ``CHUNK_BYTES`` (at least one frame, possibly empty)."""
    size = settings.CHUNK_BYTES
    view = memoryview(data)
    for start in range(0, max(len(data), 1), size):
        yield bytes(view[start : start + size])


def join_chunks(parts: Iterable[bytes], *, expected: int | None = None) -> bytes:
    """Reassemble frames, refusing more than the declared or the global size limit."""
    limit = settings.MAX_LOGICAL_MESSAGE_BYTES if expected is None else expected
    buf = bytearray()
    for part in parts:
        buf += part
        if len(buf) > limit:
            raise ProtocolError("step payload exceeds its declared size")
    if expected is not None and len(buf) != expected:
        raise ProtocolError(f"step payload has {len(buf)} bytes, header declared {expected}")
    return bytes(buf)
