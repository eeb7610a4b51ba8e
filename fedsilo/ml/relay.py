"""The coordinator's mailbox in one process: every message through the wire codec, counted.

The in-process runners of the protocols (:mod:`fedsilo.protocols.lr.local`,
:mod:`fedsilo.protocols.hlr.local`) play the coordinator's part without a network so the
algorithms can be tested and measured alone. Every message is encoded with
:func:`fedsilo.message.encode` and decoded again on the way (so nothing that would not survive
the wire is exchanged), and :class:`Relay` counts the bytes the coordinator would relay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fedsilo.message import Message, decode, encode

__all__ = ["Relay"]


@dataclass
class Relay:
    """The coordinator's mailbox in-process: encodes, counts and decodes every message."""

    bytes_relayed: int = 0
    messages: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    def carry(self, msg: Message) -> Message:
        data = encode(msg)
        self.bytes_relayed += len(data)
        self.messages += 1
        return decode(data)

    def carry_all(self, msgs: dict[str, Message]) -> dict[str, Message]:
        return {party: self.carry(m) for party, m in msgs.items()}
