"""Vertical LR run in one process, every message through the wire codec: tests' and bench's
coordinator.

The real coordinator drives the same party objects over gRPC (:mod:`fedsilo.protocols.lr.driver`);
this module plays its part without a network (:class:`fedsilo.ml.relay.Relay` encodes, counts
and decodes every message).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from fedsilo.ml.relay import Relay
from fedsilo.protocols.lr.vertical import LabelHolder, PassiveParty

__all__ = ["run_vertical"]


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
