"""ECDH private set intersection as pure code over bytes (no network).

Roles: one :class:`Leader` (the label holder) and any number of :class:`Follower` s. Each follower
runs a two-party ECDH-PSI with the leader through the coordinator's relay; the leader intersects
all of them. Drive them with :class:`fedsilo.message.Message` s, batch by batch::

    leader = Leader(context=ctx, followers=["f1", "f2"], reveal_to=["f1"])
    f1 = Follower(context=ctx)
    for batch in my_ids:             # every party streams its own ids
        f1.blind_own(batch)          # a follower holds its points ...
    to_leader = f1.close_own()       # ... and sends them sorted by value (one batch at a time)
    ...
    result = leader.finish()         # count, own rows in agreed order, one message per follower

Modes: alignment (the leader learns its rows in the intersection; each follower named in
``reveal_to`` learns its own rows, the others only the count) and cardinality-only (every party
learns only the count; followers share a shuffle seed, see :func:`new_shuffle_seed`). Ids hash
to Curve25519 by RFC 9380 Elligator 2 (``_hash_to_curve``); a follower's order of sending depends
on its id set only (``_follower``). What each message reveals is registered in
:mod:`fedsilo.leakage` and written in ``docs/leakage.md``.
"""

from __future__ import annotations

from ._follower import Follower, FollowerResult
from ._ids import PackedIds, pack_ids
from ._leader import Leader, LeaderResult
from ._messages import (
    ALIGNMENT,
    BLINDED,
    CARDINALITY,
    DOUBLE,
    END,
    SHUFFLE_SEED,
    read_seed,
    seed_message,
)
from ._pump import Pump
from ._x25519 import new_secret

__all__ = [
    "ALIGNMENT",
    "BLINDED",
    "CARDINALITY",
    "DOUBLE",
    "END",
    "SHUFFLE_SEED",
    "Follower",
    "FollowerResult",
    "Leader",
    "LeaderResult",
    "PackedIds",
    "Pump",
    "new_shuffle_seed",
    "pack_ids",
    "read_seed",
    "seed_message",
]


def new_shuffle_seed() -> bytes:
    """The 32-byte seed one follower draws and sends (sealed) to the others in cardinality mode."""
    return new_secret()
