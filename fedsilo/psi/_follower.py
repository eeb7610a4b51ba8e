"""The follower's side of ECDH-PSI: blind its own ids, blind the leader's, learn what policy allows.

Alignment mode, per batch: own ids -> ``psi.blinded`` to the leader (in row order); the leader's
``psi.blinded`` -> ``psi.double_blinded`` back (same order). At the end the leader sends
``psi.alignment`` (this follower's rows in the agreed order) if the job lets it learn them, else
``psi.cardinality``.

Cardinality mode: the follower holds its blinded ids and the leader's doubly blinded values until
each set is complete, then sends its own in a private random order and the leader's in the order of
a permutation derived from the seed all followers share (``psi.shuffle_seed``) and the leader never
sees. Position ``j`` then means the same leader id at every follower, so the leader can count the
ids every follower holds, but cannot tell which of its rows they are.

Memory bound: alignment mode holds 16 bytes per own id (to refuse duplicate ids) plus one batch
(32 bytes per id, ``settings.PSI_BATCH_IDS``). Cardinality mode holds 32 bytes per own id and 16
bytes per leader id plus one batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from fedsilo import settings
from fedsilo.errors import DataError, PolicyError, ProtocolError
from fedsilo.message import Message

from . import _messages as m
from ._match import fingerprints, has_duplicates, seeded_permutation, take_halves
from ._x25519 import blind, hash_and_blind, new_secret

__all__ = ["Follower", "FollowerResult"]


@dataclass(frozen=True)
class FollowerResult:
    """What the follower learned: the size, and its rows in agreed order if it may know them."""

    count: int
    rows: np.ndarray | None


def check_min(count: int, minimum: int, who: str) -> None:
    """Refuse an intersection smaller than ``who``'s policy minimum, and say so."""
    if count < minimum:
        raise PolicyError(
            f"intersection of {count} ids is below the minimum of {minimum} set by {who}'s policy"
        )


class Follower:
    """One follower of one PSI job; feed it messages in order, it returns the ones to send."""

    def __init__(
        self,
        *,
        context: bytes,
        cardinality_only: bool = False,
        shuffle_seed: bytes | None = None,
        min_intersection: int = settings.DEFAULT_MIN_INTERSECTION,
        secret: bytes | None = None,
    ) -> None:
        self.context = context
        self.cardinality_only = cardinality_only
        self.min_intersection = min_intersection
        self._seed = shuffle_seed
        self._secret = secret or new_secret()
        self._own_fp: list[np.ndarray] = []  # alignment mode: duplicate check only
        self._own_points: list[np.ndarray] = []  # cardinality mode: held until shuffled
        self._own_count = 0
        self._own_closed = False
        self._leader_fp: list[np.ndarray] = []  # cardinality mode
        self._leader_count = 0
        self._leader_total: int | None = None

    def set_shuffle_seed(self, seed: bytes) -> None:
        """The followers' shared seed (cardinality mode), if it was not known at construction."""
        if not self.cardinality_only or self._seed not in (None, seed):
            raise ProtocolError("unexpected PSI shuffle seed")
        self._seed = seed

    # --- own ids --------------------------------------------------------------------------------

    def blind_own(self, ids: Sequence[object]) -> Message | None:
        """Hash and blind a batch of own ids; the message to send now (None: held until closed)."""
        if self._own_closed:
            raise ProtocolError("own ids already closed")
        points = hash_and_blind(self._secret, ids, self.context, first_row=self._own_count)
        offset, self._own_count = self._own_count, self._own_count + len(points)
        if self.cardinality_only:
            self._own_points.append(points)
            return None
        self._own_fp.append(fingerprints(points))
        return m.blinded_message(points, offset)

    def close_own(self) -> list[Message]:
        """Refuse an empty or duplicated set; the messages that finish the own stream."""
        self._own_closed = True
        if self._own_count == 0:
            raise DataError("the PSI dataset has no ids")
        if not self.cardinality_only:
            _refuse_duplicates(*take_halves(self._own_fp))  # empties the list as it copies
            return [m.end_message(self._own_count, self.min_intersection)]
        points, self._own_points = np.concatenate(self._own_points), []
        fp = fingerprints(points)
        _refuse_duplicates(fp[:, 0], fp[:, 1])
        shuffled = points[seeded_permutation(len(points), new_secret())]
        return [
            *_batches(shuffled, m.blinded_message),
            m.end_message(len(points), self.min_intersection),
        ]

    # --- the leader's ids -----------------------------------------------------------------------

    def on_leader(self, msg: Message) -> list[Message]:
        """Handle a leader's ``psi.blinded`` or ``psi.end``; the messages to send back now."""
        if msg.kind == m.END:
            return self._leader_end(m.int_meta(msg, "count"))
        points, offset = m.read_blinded(msg)
        if offset != self._leader_count or self._leader_total is not None:
            raise ProtocolError(f"leader batch at offset {offset}, expected {self._leader_count}")
        double = blind(self._secret, points)
        self._leader_count += len(points)
        if self.cardinality_only:
            self._leader_fp.append(np.ascontiguousarray(double[:, :16]))
            return []
        return [m.double_message(double, offset)]

    def _leader_end(self, total: int) -> list[Message]:
        if self._leader_total is not None:
            raise ProtocolError("the leader ended its ids twice")
        if total != self._leader_count:
            raise ProtocolError(f"leader announced {total} ids but sent {self._leader_count}")
        self._leader_total = total
        if not self.cardinality_only:
            return []
        if self._seed is None:
            raise ProtocolError("the followers' shuffle seed never arrived")
        fp = np.concatenate(self._leader_fp) if self._leader_fp else np.zeros((0, 16), np.uint8)
        self._leader_fp = []
        return _batches(fp[seeded_permutation(total, self._seed)], m.double_message)

    # --- the result -----------------------------------------------------------------------------

    def on_result(self, msg: Message) -> FollowerResult:
        """The leader's ``psi.alignment`` or ``psi.cardinality``, checked against own policy."""
        if msg.kind == m.CARDINALITY:
            count = m.int_meta(msg, "count")
            check_min(count, self.min_intersection, "this silo")
            return FollowerResult(count=count, rows=None)
        if self.cardinality_only:
            raise ProtocolError("an alignment was sent in a cardinality-only job")
        rows = msg.expect(m.ALIGNMENT).array("rows")
        if rows.dtype.kind != "u" or rows.ndim != 1 or len(rows) != m.int_meta(msg, "count"):
            raise ProtocolError("malformed PSI alignment")
        rows = rows.astype(np.int64)
        if len(rows) and (int(rows.max()) >= self._own_count or len(np.unique(rows)) != len(rows)):
            raise ProtocolError("PSI alignment names rows this silo does not have")
        check_min(len(rows), self.min_intersection, "this silo")
        return FollowerResult(count=len(rows), rows=rows)

    @property
    def held_bytes(self) -> int:
        """Bytes of per-id state held now (for the memory bound and the benchmark)."""
        arrays = self._own_fp + self._own_points + self._leader_fp
        return sum(a.nbytes for a in arrays)


def _refuse_duplicates(hi: np.ndarray, lo: np.ndarray) -> None:
    if has_duplicates(hi, lo):
        raise DataError("the PSI dataset has duplicate ids")


def _batches(values: np.ndarray, build: Callable[[np.ndarray, int], Message]) -> list[Message]:
    """Split ``values`` into ``PSI_BATCH_IDS``-sized messages (views, no copies)."""
    step = settings.PSI_BATCH_IDS
    return [build(values[i : i + step], i) for i in range(0, len(values), step)]
