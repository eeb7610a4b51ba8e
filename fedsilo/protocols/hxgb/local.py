"""Horizontal XGBoost run in one process (:func:`fedsilo.protocols.hxgb.training.
train_in_process`): tests' and bench's coordinator.

The message order is :func:`fedsilo.protocols.hxgb.conversation.run`, the one the coordinator's
driver runs over gRPC; here :class:`fedsilo.protocols.conversation.InProcess` plays the members
with the silo objects, every message through the wire codec (:class:`fedsilo.ml.relay.Relay`
counts the bytes).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence

from fedsilo.message import Message
from fedsilo.ml.ensemble import TreeEnsemble
from fedsilo.ml.relay import Relay
from fedsilo.protocols.conversation import InProcess, Reply, Step, StepInput
from fedsilo.protocols.hxgb import conversation
from fedsilo.protocols.hxgb.step import key_holder
from fedsilo.protocols.hxgb.training import (
    PUBLIC_CONTEXT,
    SECRET_CONTEXT,
    HxgbSilo,
    TrainingStats,
    check_silo_count,
)

__all__ = ["run_in_process"]


class _Timed(InProcess):
    """:class:`InProcess` that adds up the seconds spent inside the members' steps."""

    def __init__(self, steps: dict[tuple[str, str], Step], relay: Relay) -> None:
        super().__init__({k: self._timed(f) for k, f in steps.items()}, relay)
        self.seconds = 0.0

    def _timed(self, step: Step) -> Step:
        def run(req: StepInput) -> Reply:
            t0 = time.perf_counter()
            try:
                return step(req)
            finally:
                self.seconds += time.perf_counter() - t0

        return run


def run_in_process(silos: Sequence[HxgbSilo]) -> tuple[TreeEnsemble, TrainingStats]:
    """Run the whole protocol between ``silos`` in this process, as the coordinator would."""
    check_silo_count(len(silos))
    relay = Relay()
    members = [s.party for s in silos]
    steps: dict[tuple[str, str], Step] = {}
    for silo in silos:
        steps.update(_member_steps(silo, members))
    parties = _Timed(steps, relay)
    trained = conversation.run(parties, members, params=silos[0].params)
    stats = TrainingStats(
        rounds=trained.rounds,
        bytes_relayed=relay.bytes_relayed,
        silo_seconds=parties.seconds,
        aggregator_seconds=trained.aggregator_seconds,
        valid_losses=trained.valid_losses,
    )
    return silos[0].model(), stats


def _member_steps(silo: HxgbSilo, members: list[str]) -> dict[tuple[str, str], Step]:
    """A member's steps, as its silo runs them (``fedsilo/protocols/hxgb/silo.py``)."""
    holder = key_holder(members)

    def start(req: StepInput) -> Reply:
        digest = hashlib.sha256(json.dumps(silo.feature_names).encode()).hexdigest()[:32]
        if silo.party != holder:
            return Reply(meta={"columns_digest": digest})
        secret, public = silo.create_keys()
        return Reply(
            meta={"columns_digest": digest},
            outbox={p: secret for p in members if p != holder},
            released=Message(PUBLIC_CONTEXT, blobs={"context": public}),
        )

    def keys(req: StepInput) -> Reply:
        if silo.party != holder:
            silo.accept_keys(req.inbox[holder].expect(SECRET_CONTEXT))
        return Reply(released=silo.binning_update())

    def round_(req: StepInput) -> Reply:
        status, update = conversation.member_round(silo, req.plain)
        return Reply(meta=status.to_meta(), released=update)

    def finish(req: StepInput) -> Reply:
        model = silo.model()
        return Reply(
            meta={
                "trees": len(model.trees),
                "digest": conversation.model_digest(model),
                "best_iteration": model.info.get("best_iteration"),
            }
        )

    methods: dict[str, Step] = {
        "hxgb.start": start,
        "hxgb.keys": keys,
        "hxgb.round": round_,
        "hxgb.finish": finish,
    }
    return {(silo.party, m): f for m, f in methods.items()}
