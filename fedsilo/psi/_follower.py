"""The follower's side of ECDH-PSI: blind its own ids, blind the leader's, learn what policy allows.

Own ids, both modes: the follower blinds every batch but holds the points until its set is
closed (dummies included), then sends them sorted by the blinded value itself (``psi.blinded``).
The values are pseudo-random to the leader, so that order carries nothing: the leader's view is a
function of the follower's id *set* (tested byte for byte), not of its row order, nor of where
the padding dummies sit. The follower keeps the permutation (sent position -> own row) to read
the leader's ``psi.alignment``, which names positions in the sent order.

Leader's ids. Alignment mode: each ``psi.blinded`` from the leader goes back as
``psi.double_blinded`` at once, in the leader's order. Cardinality mode: the follower holds the
doubly blinded values until the leader's set is complete, then sends them in the order of a
permutation derived from the seed all followers share (``psi.shuffle_seed``) and the leader never
sees. Position ``j`` then means the same leader id at every follower, so the leader can count the
ids every follower holds, but cannot tell which of its rows they are.

Memory bound: 32 bytes per own id until they are all sent; closing adds ~20 bytes per own id
for the sort (a key and the order, :func:`value_order`); each sorted batch is gathered from the
held parts (32 bytes per id of a batch, ``settings.PSI_BATCH_IDS``), never a second full copy.
After the last batch the points are freed; alignment mode keeps 4 bytes per own id (the order; 8
beyond 2^32 ids) until the result. Cardinality mode also holds 16 bytes per leader id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from fedsilo import settings
from fedsilo.errors import DataError, PolicyError, ProtocolError
from fedsilo.message import Message

from . import _messages as m
from ._match import DuplicateValues, seeded_permutation, value_order
from ._x25519 import POINT_BYTES, blind, hash_and_blind, new_secret

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
        self._own_points: list[np.ndarray] = []  # held until closed and sent, sorted by value
        self._order: np.ndarray | None = None  # sent position -> own row
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

    @property
    def peer_count(self) -> int:
        """The leader's blinded ids received and blinded again so far (progress)."""
        return self._leader_count

    # --- own ids --------------------------------------------------------------------------------

    def blind_own(self, ids: Sequence[object]) -> None:
        """Hash and blind a batch of own ids and hold them: they go out sorted, once closed."""
        if self._own_closed:
            raise ProtocolError("own ids already closed")
        points = hash_and_blind(self._secret, ids, self.context, first_row=self._own_count)
        self._own_points.append(points)
        self._own_count += len(points)

    def close_own(self) -> Iterator[Message]:
        """Refuse an empty or duplicated set; then the own points sorted by value, and the end.

        The checks run now; the messages are built one batch at a time as they are drawn.
        """
        self._own_closed = True
        if self._own_count == 0:
            raise DataError("the PSI dataset has no ids")
        try:
            self._order = _narrow(value_order(self._own_points))
        except DuplicateValues:
            raise DataError("the PSI dataset has duplicate ids") from None
        return self._sorted_batches(self._order)

    def _sorted_batches(self, order: np.ndarray) -> Iterator[Message]:
        parts, step = self._own_points, settings.PSI_BATCH_IDS
        starts = np.cumsum([0] + [len(p) for p in parts])
        for at in range(0, len(order), step):
            yield m.blinded_message(_gather(parts, starts, order[at : at + step]), at)
        parts.clear()  # the points, now all sent (this list is ``self._own_points``)
        if self.cardinality_only:
            self._order = None
        yield m.end_message(len(order), self.min_intersection)

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
        sent = msg.expect(m.ALIGNMENT).array("rows")  # positions in the order this silo sent
        if sent.dtype.kind != "u" or sent.ndim != 1 or len(sent) != m.int_meta(msg, "count"):
            raise ProtocolError("malformed PSI alignment")
        sent = sent.astype(np.int64)
        if self._order is None or self._own_points:
            raise ProtocolError("a PSI alignment arrived before this silo sent its ids")
        if len(sent) and (int(sent.max()) >= self._own_count or len(np.unique(sent)) != len(sent)):
            raise ProtocolError("PSI alignment names rows this silo does not have")
        check_min(len(sent), self.min_intersection, "this silo")
        return FollowerResult(count=len(sent), rows=self._order[sent].astype(np.int64))

    @property
    def held_bytes(self) -> int:
        """Bytes of per-id state held now (for the memory bound and the benchmark)."""
        arrays = [*self._own_points, *self._leader_fp, self._order]
        return sum(a.nbytes for a in arrays if a is not None)


def _gather(parts: list[np.ndarray], starts: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` of the parts taken as one array (part ``i`` begins at row ``starts[i]``),
    without concatenating them: one fancy index per part, so the peak is the result."""
    which = np.searchsorted(starts, rows, side="right") - 1
    by_part = np.argsort(which, kind="stable")
    bounds = np.searchsorted(which[by_part], np.arange(len(parts) + 1))
    out = np.empty((len(rows), POINT_BYTES), np.uint8)
    for i, (a, b) in enumerate(pairwise(bounds.tolist())):
        if a < b:
            sel = by_part[a:b]
            out[sel] = parts[i][rows[sel] - starts[i]]
    return out


def _narrow(order: np.ndarray) -> np.ndarray:
    """An order in 4 bytes per row when the rows fit (they do below 2^32 ids)."""
    return order.astype(np.uint32) if len(order) < 2**32 else order


def _batches(values: np.ndarray, build: Callable[[np.ndarray, int], Message]) -> list[Message]:
    """Split ``values`` into ``PSI_BATCH_IDS``-sized messages (views, no copies)."""
    step = settings.PSI_BATCH_IDS
    return [build(values[i : i + step], i) for i in range(0, len(values), step)]
