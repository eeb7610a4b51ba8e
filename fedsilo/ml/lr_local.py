"""Both LR forms run in one process, every message through the wire codec: tests' and bench's
coordinator.

The real coordinator drives the same party objects over gRPC (``fedsilo/coordinator/protocols``);
this module plays its part without a network so the algorithms can be tested and measured alone.
Every message is encoded with :func:`fedsilo.message.encode` and decoded again on the way
(so nothing that would not survive the wire is exchanged), and :class:`Relay` counts the bytes
the coordinator would relay.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fedsilo.message import Message, decode, encode
from fedsilo.ml.lr_horizontal import (
    STATS_PHASES,
    HorizontalLRModel,
    HorizontalSilo,
    aggregate,
    check_silo_count,
)
from fedsilo.ml.lr_vertical import LabelHolder, PassiveParty

__all__ = ["Relay", "run_horizontal", "run_vertical"]


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


def run_horizontal(
    silos: Sequence[HorizontalSilo], relay: Relay | None = None
) -> HorizontalLRModel:
    """Key sharing, four statistic rounds, then FedAvg rounds until the silos report convergence.

    ``relay.history`` gets one entry per round (loss, change, cumulative bytes and seconds).
    """
    relay = relay if relay is not None else Relay()
    check_silo_count(len(silos))
    start = time.perf_counter()
    secret, public = silos[0].create_keys()
    for silo in silos[1:]:
        silo.accept_keys(relay.carry(secret))
    for index in range(STATS_PHASES):
        total = aggregate(public, [relay.carry(s.stats_message(index)) for s in silos])
        for silo in silos:
            silo.accept_stats(relay.carry(total))
    for _ in range(silos[0].config.max_iter):
        total = aggregate(public, [relay.carry(s.update_message()) for s in silos])
        results = [silo.accept_update(relay.carry(total)) for silo in silos]
        relay.history.append(
            {
                **results[0].to_meta(),
                "bytes": relay.bytes_relayed,
                "seconds": time.perf_counter() - start,
            }
        )
        if results[0].converged:
            break
    return silos[0].model()


def run_vertical(
    label_holder: LabelHolder, passives: Sequence[PassiveParty], relay: Relay | None = None
) -> None:
    """Key and seed exchange, then mini-batch epochs until the label holder reports convergence.

    Each party keeps its own trained part; ``relay.history`` gets one entry per epoch.
    """
    relay = relay if relay is not None else Relay()
    start = time.perf_counter()
    public_key = label_holder.public_key_message()
    for passive in passives:
        passive.accept_public_key(relay.carry(public_key))
    _exchange_pair_seeds(passives, relay)
    for epoch in range(label_holder.config.max_iter):
        for batch in range(label_holder.batches_in_epoch(epoch)):
            _vertical_batch(label_holder, passives, relay, epoch, batch)
        result = label_holder.end_epoch(epoch)
        relay.history.append(
            {
                **result.to_meta(),
                "bytes": relay.bytes_relayed,
                "seconds": time.perf_counter() - start,
            }
        )
        if result.stop:
            break


def _exchange_pair_seeds(passives: Sequence[PassiveParty], relay: Relay) -> None:
    by_name = {p.party: p for p in passives}
    for passive in passives:
        for peer, msg in passive.pair_seed_messages().items():
            by_name[peer].accept_pair_seed(passive.party, relay.carry(msg))


def _vertical_batch(
    label_holder: LabelHolder,
    passives: Sequence[PassiveParty],
    relay: Relay,
    epoch: int,
    batch: int,
) -> None:
    partials = {p.party: relay.carry(p.partial_message(epoch, batch)) for p in passives}
    residuals = label_holder.residual_message(epoch, batch, partials)
    masked = {p.party: relay.carry(p.gradient_message(relay.carry(residuals))) for p in passives}
    unmasked = relay.carry_all(label_holder.decrypt_gradients(masked))
    for passive in passives:
        passive.apply_gradient(unmasked[passive.party])
