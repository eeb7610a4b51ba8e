"""The leader's side of ECDH-PSI (the label holder): it intersects with every follower.

Pairwise with each follower ``F`` through the relay: the leader sends ``H(x)^a`` for its ids ``x``
(one message per batch, the same to every follower) and gets back ``H(x)^(a·f)``; it receives
``H(y)^f`` for ``F``'s ids and raises them to ``H(y)^(f·a)`` itself. Equal values are shared ids.
The multi-party intersection is the set of the leader's rows that every follower holds.

Orders. A follower sends its points sorted by value (see :mod:`._follower`), so the leader learns
which *sent positions* match, which says nothing about the follower's rows; ``psi.alignment``
names those positions and the follower maps them back. The leader sends its own points in row
order, dummies last: a follower learns nothing from that order, because it never learns which of
the leader's values match (that needs ``H(y)^(f·a)``, hence the leader's secret); what it is told
at the end is its own rows, in the agreed order.

Agreed order: a uniformly random permutation the leader draws (ChaCha20 from a fresh seed). It is
the same for every party because each is told its own rows in that one order, and it reveals
nothing: sorting by a doubly blinded value would not do, because a follower knows the doubly
blinded values of the leader's ids in the leader's row order.

Memory bound: 16 bytes per own id per follower, plus 16 bytes per follower id, plus one batch
(32 bytes per id); ``finish`` matches one pair at a time, ~17 bytes per id of that pair more than
it holds (:func:`match`). For 10M ids each at 3 parties: ~0.65 GB of PSI state at the leader,
~0.3 GB more while it matches.
Everything is numpy, no per-id Python object.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from functools import reduce

import numpy as np

from fedsilo import settings
from fedsilo.errors import DataError, ProtocolError
from fedsilo.message import Message

from . import _messages as m
from ._follower import check_min
from ._match import (
    DuplicateValues,
    check_fingerprints,
    fingerprints,
    match,
    seeded_permutation,
)
from ._x25519 import blind, hash_and_blind, new_secret

__all__ = ["Leader", "LeaderResult"]


@dataclass(frozen=True)
class LeaderResult:
    """The leader's outcome: count, own rows in agreed order (None in cardinality mode), outbox."""

    count: int
    rows: np.ndarray | None
    outbox: dict[str, Message]


@dataclass
class _Peer:
    """What the leader holds about one follower."""

    theirs: list[np.ndarray] = field(default_factory=list)  # H(y)^(f·a) fingerprints, as sent
    their_count: int = 0
    their_end: tuple[int, int] | None = None  # (count, min_intersection) from psi.end
    ours: list[np.ndarray] = field(default_factory=list)  # H(x)^(a·f) fingerprints
    our_count: int = 0

    def held_bytes(self) -> int:
        return sum(a.nbytes for a in self.theirs + self.ours)


class Leader:
    """The leader of one PSI job; feed it the followers' messages, then call :meth:`finish`."""

    def __init__(
        self,
        *,
        context: bytes,
        followers: Sequence[str],
        cardinality_only: bool = False,
        reveal_to: Collection[str] = (),
        min_intersection: int = settings.DEFAULT_MIN_INTERSECTION,
        secret: bytes | None = None,
    ) -> None:
        if not followers or len(set(followers)) != len(followers):
            raise ValueError("a PSI leader needs one or more distinct followers")
        if cardinality_only and reveal_to:
            raise ValueError("a cardinality-only job reveals the intersection to nobody")
        unknown = set(reveal_to) - set(followers)
        if unknown:
            raise ValueError(f"reveal_to names parties that are not followers: {sorted(unknown)}")
        self.context = context
        self.cardinality_only = cardinality_only
        self.reveal_to = frozenset(reveal_to)
        self.min_intersection = min_intersection
        self._secret = secret or new_secret()
        self._peers = {name: _Peer() for name in followers}
        self._own_count = 0
        self._own_closed = False

    @property
    def peer_count(self) -> int:
        """Followers' blinded ids received and blinded again so far (progress)."""
        return sum(peer.their_count for peer in self._peers.values())

    # --- own ids --------------------------------------------------------------------------------

    def blind_own(self, ids: Sequence[object]) -> Message:
        """Hash and blind one batch of own ids: the ``psi.blinded`` for every follower."""
        if self._own_closed:
            raise ProtocolError("own ids already closed")
        points = hash_and_blind(self._secret, ids, self.context, first_row=self._own_count)
        offset, self._own_count = self._own_count, self._own_count + len(points)
        return m.blinded_message(points, offset)

    def close_own(self) -> Message:
        """The ``psi.end`` for every follower; refuses an empty set."""
        self._own_closed = True
        if self._own_count == 0:
            raise DataError("the PSI dataset has no ids")
        return m.end_message(self._own_count, self.min_intersection)

    # --- followers' messages --------------------------------------------------------------------

    def on_follower(self, sender: str, msg: Message) -> None:
        """Take one message from follower ``sender`` (blinded ids, double-blinded, or end)."""
        peer = self._peer(sender)
        if msg.kind == m.BLINDED:
            points, offset = m.read_blinded(msg)
            _expect_offset(offset, peer.their_count, peer.their_end is None, sender)
            peer.theirs.append(fingerprints(blind(self._secret, points)))
            peer.their_count += len(points)
        elif msg.kind == m.DOUBLE:
            fp = check_fingerprints(msg.array("fingerprints"))
            _expect_offset(m.int_meta(msg, "offset"), peer.our_count, True, sender)
            peer.ours.append(fp)
            peer.our_count += len(fp)
        elif msg.kind == m.END:
            count = m.int_meta(msg, "count")
            _expect_offset(count, peer.their_count, peer.their_end is None, sender)
            peer.their_end = (count, m.int_meta(msg, "min_intersection"))
        else:
            raise ProtocolError(f"unexpected PSI message '{msg.kind}' from {sender}")

    def _peer(self, sender: str) -> _Peer:
        try:
            return self._peers[sender]
        except KeyError:
            raise ProtocolError(f"'{sender}' is not a follower of this PSI job") from None

    # --- the result -----------------------------------------------------------------------------

    def finish(self) -> LeaderResult:
        """Intersect with every follower, check every party's minimum, build each one's result."""
        self._check_complete()
        pairs = {name: self._match_one(name, peer) for name, peer in self._peers.items()}
        common = reduce(np.intersect1d, (ours for ours, _ in pairs.values()))
        self._check_minimums(len(common))
        if self.cardinality_only:
            card = m.cardinality_message(len(common))
            return LeaderResult(len(common), None, {name: card for name in self._peers})
        order = seeded_permutation(len(common), new_secret())
        outbox = {name: self._result_for(name, common, pairs[name], order) for name in self._peers}
        return LeaderResult(len(common), common[order], outbox)

    def _check_complete(self) -> None:
        if not self._own_closed:
            raise ProtocolError("the leader's own ids are not closed")
        for name, peer in self._peers.items():
            if peer.their_end is None or peer.our_count != self._own_count:
                raise ProtocolError(f"PSI with {name} is incomplete")

    def _match_one(self, name: str, peer: _Peer) -> tuple[np.ndarray, np.ndarray]:
        """(our rows, their rows) of the ids both hold, sorted by our row; frees the pair."""
        parts = peer.ours + peer.theirs
        peer.ours, peer.theirs = [], []
        try:
            return match(parts, peer.our_count)  # frees each part as it is copied
        except DuplicateValues as dup:
            if dup.side == 0:
                raise DataError("the PSI dataset has duplicate ids") from None
            raise ProtocolError(f"{name} sent the same id twice") from None

    def _check_minimums(self, count: int) -> None:
        check_min(count, self.min_intersection, "the leader")
        for name, peer in self._peers.items():
            assert peer.their_end is not None
            check_min(count, peer.their_end[1], name)

    def _result_for(
        self, name: str, common: np.ndarray, pair: tuple[np.ndarray, np.ndarray], order: np.ndarray
    ) -> Message:
        if name not in self.reveal_to:
            return m.cardinality_message(len(common))
        ours, theirs = pair
        return m.alignment_message(theirs[np.searchsorted(ours, common)][order])

    @property
    def held_bytes(self) -> int:
        """Bytes of per-id state held now (for the memory bound and the benchmark)."""
        return sum(peer.held_bytes() for peer in self._peers.values())


def _expect_offset(offset: int, expected: int, open_: bool, sender: str) -> None:
    if offset != expected or not open_:
        raise ProtocolError(
            f"{sender} sent PSI values out of order (at {offset}, expected {expected})"
        )
