"""One party's PSI traffic in relay rounds: queues per peer, back-pressure, no network.

The coordinator (or the benchmark) runs rounds: every party gets the messages relayed to it since
the last round, answers them, blinds its next batch of ids and hands back at most one message
per peer. A party blinds a new batch (or, once its ids are closed, builds the next message of its
closing stream: a follower's sorted batches) only while at most one message waits for each peer,
so a fast party cannot pile up batches: a pump holds a few batches at most (32 bytes per id each)
besides its role's state. Rounds run concurrently at all parties, so the cores of each party
(or of one machine running all of them) stay busy while messages travel.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence

from fedsilo.errors import ProtocolError
from fedsilo.message import Message

from ._follower import Follower
from ._leader import Leader
from ._messages import SHUFFLE_SEED, read_seed

__all__ = ["Pump"]


class Pump:
    """Drive one :class:`Leader` or :class:`Follower` through relay rounds."""

    def __init__(
        self,
        role: Leader | Follower,
        ids: Iterator[Sequence[object]],
        *,
        leader: str,
        followers: Sequence[str],
    ) -> None:
        self.role = role
        self.leader = leader
        self.followers = list(followers)
        self.own_count = 0
        self._ids: Iterator[Sequence[object]] | None = ids
        self._closing: Iterator[Message] | None = None  # drawn one message at a time
        self._ahead: Message | None = None  # the closing stream's next message, if any
        peers = self.followers if isinstance(role, Leader) else [leader]
        self._queues: dict[str, deque[Message]] = {p: deque() for p in peers}

    @property
    def idle(self) -> bool:
        """True once every own id is sent and nothing waits to be sent."""
        return self._ids is None and self._ahead is None and not any(self._queues.values())

    def round(self, inbox: dict[str, Message]) -> dict[str, Message]:
        """Take this round's inbox; return at most one message per peer."""
        self._take(inbox)
        if all(len(q) <= 1 for q in self._queues.values()):
            if self._ids is not None:
                self._blind_next()
            elif self._ahead is not None:
                self._queue([self._draw()])
        return {p: q.popleft() for p, q in self._queues.items() if q}

    def _take(self, inbox: dict[str, Message]) -> None:
        """Feed each relayed message to the role; answers join the back of the sender's queue."""
        for sender, msg in inbox.items():
            if isinstance(self.role, Leader):
                self.role.on_follower(sender, msg)
            elif msg.kind == SHUFFLE_SEED and sender in self.followers:
                self.role.set_shuffle_seed(read_seed(msg))
            elif sender == self.leader:
                self._queues[sender].extend(self.role.on_leader(msg))
            else:
                raise ProtocolError(f"unexpected PSI message from '{sender}'")

    def _blind_next(self) -> None:
        """Blind the next batch of own ids and queue what it gives, or close the own stream."""
        assert self._ids is not None
        batch = next(self._ids, None)
        if batch is not None:
            msg = self.role.blind_own(batch)
            self.own_count += len(batch)
            self._queue([msg] if msg is not None else [])
            return
        self._ids = None
        closing = self.role.close_own()
        self._closing = iter([closing] if isinstance(closing, Message) else closing)
        self._ahead = next(self._closing, None)
        self._queue([self._draw()])

    def _draw(self) -> Message:
        """The closing stream's next message; looks one ahead so that ``idle`` is exact."""
        assert self._closing is not None and self._ahead is not None
        msg, self._ahead = self._ahead, next(self._closing, None)
        return msg

    def _queue(self, out: list[Message]) -> None:
        for queue in self._queues.values():
            queue.extend(out)
