"""Horizontal LR run in one process, every message through the wire codec: tests' and bench's
coordinator.

The message order is :func:`fedsilo.protocols.hlr.conversation.run`, the one the coordinator's
driver runs over gRPC; here :class:`fedsilo.protocols.conversation.InProcess` plays the members
with the silo objects (:class:`fedsilo.ml.relay.Relay` encodes, counts and decodes every
message).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from fedsilo.message import Message
from fedsilo.ml.relay import Relay
from fedsilo.protocols.conversation import InProcess, Reply, Step, StepInput
from fedsilo.protocols.hlr import conversation
from fedsilo.protocols.hlr.horizontal import (
    SECRET_CONTEXT,
    HorizontalLRModel,
    HorizontalSilo,
    check_silo_count,
)

__all__ = ["run_horizontal"]


def run_horizontal(
    silos: Sequence[HorizontalSilo], relay: Relay | None = None
) -> HorizontalLRModel:
    """Key sharing, four statistic rounds, then FedAvg rounds until the silos report convergence.

    ``relay.history`` gets one entry per round (loss, change, cumulative bytes and seconds).
    """
    relay = relay if relay is not None else Relay()
    check_silo_count(len(silos))
    start = time.perf_counter()

    def round_done(meta: dict[str, Any]) -> None:
        relay.history.append(
            {**meta, "bytes": relay.bytes_relayed, "seconds": time.perf_counter() - start}
        )

    members = [s.party for s in silos]
    steps: dict[tuple[str, str], Step] = {}
    for silo in silos:
        steps.update(_member_steps(silo, members))
    conversation.run(
        InProcess(steps, relay), members, max_iter=silos[0].config.max_iter, on_round=round_done
    )
    return silos[0].model()


def _member_steps(silo: HorizontalSilo, members: list[str]) -> dict[tuple[str, str], Step]:
    """A member's steps, as its silo runs them (``fedsilo/protocols/hlr/silo.py``)."""

    def setup(req: StepInput) -> Reply:
        meta = {"columns_digest": "\x00".join(silo.feature_names)}
        if silo.party != members[0]:
            silo.accept_keys(req.inbox[members[0]].expect(SECRET_CONTEXT))
            return Reply(meta=meta)
        secret, public = silo.create_keys()
        return Reply(
            meta=meta,
            outbox={p: secret for p in members[1:]},
            released=Message(conversation.PUBLIC_CONTEXT, blobs={"context": public}),
        )

    def round_(req: StepInput) -> Reply:
        meta, contribution = conversation.member_round(
            silo, req.plain, str(req.meta["next"]), int(req.meta["index"])
        )
        return Reply(meta=meta, released=contribution)

    def save(req: StepInput) -> Reply:
        return Reply(meta={"saved": True})

    methods: dict[str, Step] = {"hlr.setup": setup, "hlr.round": round_, "hlr.save": save}
    return {(silo.party, m): f for m, f in methods.items()}
