"""Vertical LR run in one process, every message through the wire codec: tests' and bench's
coordinator.

The message order is :func:`fedsilo.protocols.lr.conversation.run`, the one the coordinator's
driver runs over gRPC; here :class:`fedsilo.protocols.conversation.InProcess` plays the parties
by calling the party objects' methods (:class:`fedsilo.ml.relay.Relay` encodes, counts and
decodes every message).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from fedsilo.ml.relay import Relay
from fedsilo.protocols.conversation import InProcess, Reply, Step, StepInput
from fedsilo.protocols.lr import conversation
from fedsilo.protocols.lr.vertical import (
    GRADIENT_OPENED,
    MASKED_GRADIENT,
    PAIR_SEED,
    PARTIAL,
    PUBLIC_KEY,
    RESIDUALS,
    LabelHolder,
    PassiveParty,
)

__all__ = ["run_vertical"]


def run_vertical(
    label_holder: LabelHolder, passives: Sequence[PassiveParty], relay: Relay | None = None
) -> None:
    """Key and seed exchange, then mini-batch epochs until the label holder reports convergence.

    Each party keeps its own trained part; ``relay.history`` gets one entry per epoch.
    """
    relay = relay if relay is not None else Relay()
    start = time.perf_counter()

    def epoch_done(meta: dict[str, Any]) -> None:
        relay.history.append(
            {**meta, "bytes": relay.bytes_relayed, "seconds": time.perf_counter() - start}
        )

    steps = _holder_steps(label_holder)
    for passive in passives:
        steps.update(_passive_steps(passive, label_holder.party))
    conversation.run(
        InProcess(steps, relay),
        active=label_holder.party,
        passives=[p.party for p in passives],
        config=label_holder.config,
        on_epoch=epoch_done,
    )


def _holder_steps(holder: LabelHolder) -> dict[tuple[str, str], Step]:
    """The label holder's steps, as its silo runs them (``fedsilo/protocols/lr/silo.py``)."""

    def setup(req: StepInput) -> Reply:
        meta = {"rows": holder.n_rows, "resumed_at": 0, "history": []}
        key = holder.public_key_message()
        return Reply(meta=meta, outbox={p: key for p in holder.passive_parties})

    def residuals(req: StepInput) -> Reply:
        partials = {s: m.expect(PARTIAL) for s, m in req.inbox.items()}
        msg = holder.residual_message(int(req.meta["epoch"]), int(req.meta["batch"]), partials)
        return Reply(outbox={p: msg for p in holder.passive_parties})

    def open_gradients(req: StepInput) -> Reply:
        masked = {s: m.expect(MASKED_GRADIENT) for s, m in req.inbox.items()}
        return Reply(outbox=holder.decrypt_gradients(masked))

    def end_epoch(req: StepInput) -> Reply:
        return Reply(meta=holder.end_epoch(int(req.meta["epoch"])).to_meta())

    methods: dict[str, Step] = {
        "lr.setup": setup,
        "lr.residuals": residuals,
        "lr.open": open_gradients,
        "lr.end_epoch": end_epoch,
        "lr.save": _saved,
    }
    return {(holder.party, m): f for m, f in methods.items()}


def _passive_steps(passive: PassiveParty, active: str) -> dict[tuple[str, str], Step]:
    """A passive party's steps, as its silo runs them."""

    def setup(req: StepInput) -> Reply:
        passive.accept_public_key(req.inbox[active].expect(PUBLIC_KEY))
        return Reply(
            meta={"rows": passive.n_rows, "resumed_at": 0}, outbox=passive.pair_seed_messages()
        )

    def pair_seeds(req: StepInput) -> Reply:
        for sender, msg in req.inbox.items():
            passive.accept_pair_seed(sender, msg.expect(PAIR_SEED))
        return Reply()

    def partial(req: StepInput) -> Reply:
        msg = passive.partial_message(int(req.meta["epoch"]), int(req.meta["batch"]))
        return Reply(outbox={active: msg})

    def gradient(req: StepInput) -> Reply:
        return Reply(outbox={active: passive.gradient_message(req.inbox[active].expect(RESIDUALS))})

    def apply(req: StepInput) -> Reply:
        passive.apply_gradient(req.inbox[active].expect(GRADIENT_OPENED))
        return Reply()

    methods: dict[str, Step] = {
        "lr.setup": setup,
        "lr.pair_seeds": pair_seeds,
        "lr.partial": partial,
        "lr.gradient": gradient,
        "lr.apply": apply,
        "lr.save": _saved,
    }
    return {(passive.party, m): f for m, f in methods.items()}


def _saved(req: StepInput) -> Reply:
    """Each party keeps its trained part in memory (a silo stores it at ``lr.save``)."""
    return Reply(meta={"saved": True})
