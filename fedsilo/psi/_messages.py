"""The PSI message kinds, what each reveals to its recipient, and their builders and checks.

Every kind is registered with :mod:`fedsilo.leakage`; the texts are the leakage table's rows. All
messages travel silo to silo through the coordinator, sealed: the coordinator sees only lengths.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedsilo.errors import ProtocolError
from fedsilo.leakage import register_kind
from fedsilo.message import Message

from ._match import FP_BYTES
from ._x25519 import check_points

__all__ = [
    "ALIGNMENT",
    "BLINDED",
    "CARDINALITY",
    "DOUBLE",
    "END",
    "SHUFFLE_SEED",
    "alignment_message",
    "blinded_message",
    "cardinality_message",
    "double_message",
    "end_message",
    "int_meta",
    "seed_message",
]

BLINDED = register_kind(
    "psi.blinded",
    reveals="a batch of the sender's ids, each hashed to the curve with the job's context and "
    "blinded with the sender's fresh per-job secret: pseudo-random points of the prime-order "
    "subgroup; the recipient learns the batch size. A follower sends its ids sorted by value, so "
    "their order depends on its id set only",
)
END = register_kind(
    "psi.end",
    reveals="the size of the sender's id set (padded, if its policy pads) and the minimum "
    "intersection its policy accepts",
)
DOUBLE = register_kind(
    "psi.double_blinded",
    reveals="the leader's blinded ids blinded again by a follower (first 16 bytes). Alignment "
    "mode: in the leader's order, so the leader learns which of its ids this follower holds. "
    "Cardinality mode: shuffled with a seed the leader never sees, so the leader can only count",
)
SHUFFLE_SEED = register_kind(
    "psi.shuffle_seed",
    reveals="a random 32-byte seed the followers share in cardinality mode so they shuffle the "
    "leader's values alike; independent of any id",
)
ALIGNMENT = register_kind(
    "psi.alignment",
    reveals="the intersection: which of the recipient's own ids every party holds (positions in "
    "the order it sent them), in the job's agreed random order, and so its size",
)
CARDINALITY = register_kind(
    "psi.cardinality",
    reveals="the size of the intersection of all parties' id sets, nothing about its members",
)


def int_meta(msg: Message, key: str, *, minimum: int = 0) -> int:
    """An integer field of ``msg.meta``, checked: peers' meta is untrusted input."""
    value: Any = msg.meta.get(key)
    if type(value) is not int or value < minimum:
        raise ProtocolError(f"message '{msg.kind}' has a bad '{key}': {value!r:.40}")
    return int(value)


def blinded_message(points: np.ndarray, offset: int) -> Message:
    return Message(BLINDED, meta={"offset": offset}, arrays={"points": points})


def read_blinded(msg: Message) -> tuple[np.ndarray, int]:
    """``(points, offset)`` of a ``psi.blinded`` message, shape-checked."""
    msg.expect(BLINDED)
    return check_points(msg.array("points")), int_meta(msg, "offset")


def double_message(points: np.ndarray, offset: int) -> Message:
    """Doubly blinded points cut to their 16-byte fingerprint: all the leader compares."""
    head = np.ascontiguousarray(points[:, :FP_BYTES])
    return Message(DOUBLE, meta={"offset": offset}, arrays={"fingerprints": head})


def end_message(count: int, min_intersection: int) -> Message:
    return Message(END, meta={"count": count, "min_intersection": min_intersection})


def seed_message(seed: bytes) -> Message:
    return Message(SHUFFLE_SEED, blobs={"seed": seed})


def read_seed(msg: Message) -> bytes:
    seed = msg.expect(SHUFFLE_SEED).blob("seed")
    if len(seed) != 32:
        raise ProtocolError("a PSI shuffle seed is 32 bytes")
    return seed


def alignment_message(rows: np.ndarray) -> Message:
    """The recipient's row numbers in the agreed order, in the narrowest unsigned dtype."""
    dtype = np.uint32 if len(rows) == 0 or int(rows.max()) < 2**32 else np.uint64
    return Message(ALIGNMENT, meta={"count": len(rows)}, arrays={"rows": rows.astype(dtype)})


def cardinality_message(count: int) -> Message:
    return Message(CARDINALITY, meta={"count": count})
