"""Horizontal XGBoost's message order, written once: the driver (over gRPC) and the in-process
runner (:func:`fedsilo.protocols.hxgb.training.train_in_process`) both run :func:`run`.

``hxgb.start`` at every member (the key holder seals the secret CKKS context to the others and
releases the public one), ``hxgb.keys`` (everyone releases its binning update), then one
``hxgb.round`` per secure sum: the coordinator adds the members' ciphertexts with
:class:`~fedsilo.protocols.hxgb.training.Aggregator` (public context only) and sends the sum to
every member, which releases its next update, until every member reports "done"; then
``hxgb.finish`` (every member holds the same whole model; the digests they release must agree).
A member's side of a round is :func:`member_round`, which the silo step and the in-process
runner share.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fedsilo.errors import JobError, ProtocolError
from fedsilo.message import Message
from fedsilo.ml.ensemble import TreeEnsemble
from fedsilo.protocols.conversation import Parties, Reply
from fedsilo.protocols.hxgb.step import key_holder
from fedsilo.protocols.hxgb.training import (
    PUBLIC_CONTEXT,
    SUM,
    UPDATE,
    Aggregator,
    HxgbParams,
    HxgbSilo,
    RoundStatus,
)

__all__ = ["Trained", "member_round", "model_digest", "run"]

_PHASES = ("hist", "eval", "done")


@dataclass
class Trained:
    """What a run released: secure sums, pooled validation losses, the first member's
    ``hxgb.finish`` meta; and the seconds the coordinator spent adding ciphertexts."""

    rounds: int
    valid_losses: list[float]
    saved: dict[str, Any]
    aggregator_seconds: float = 0.0


def _released(reply: Reply, kind: str) -> Message:
    if reply.released is None:
        raise JobError(f"'{reply.party}' released no '{kind}' message")
    return reply.released.expect(kind)


def _setup(parties: Parties, members: Sequence[str]) -> tuple[Aggregator, dict[str, Reply]]:
    """Sessions read their data and share the key; returns the aggregator and the bins updates."""
    started = parties.call_many({p: ("hxgb.start", {}, []) for p in members})
    if len({str(r.meta.get("columns_digest")) for r in started.values()}) != 1:
        raise JobError("hxgb members name different feature columns (names and order must match)")
    holder = key_holder(members)
    public = _released(started[holder], PUBLIC_CONTEXT).blob("context")
    aggregator = Aggregator(public, len(members))
    updates = parties.call_many({p: ("hxgb.keys", {}, [started[holder]]) for p in members})
    return aggregator, updates


def _agreed(replies: Mapping[str, Reply]) -> dict[str, Any]:
    """The round status every member released; they must be identical."""
    statuses = [r.meta for r in replies.values()]
    status = statuses[0]
    if any(s != status for s in statuses[1:]):
        raise JobError("hxgb members disagree about the model's progress")
    if status.get("next") not in _PHASES or not isinstance(status.get("tree"), int):
        raise JobError("hxgb member released a malformed round status")
    return status


def _finish(parties: Parties, members: Sequence[str]) -> dict[str, Any]:
    """Every member stores the model; the digests they release must agree."""
    replies = parties.call_many({p: ("hxgb.finish", {}, []) for p in members})
    if len({str(r.meta.get("digest")) for r in replies.values()}) != 1:
        raise JobError("hxgb members ended with different models")
    return dict(replies[members[0]].meta)


def run(
    parties: Parties,
    members: Sequence[str],
    *,
    params: HxgbParams,
    on_round: Callable[[dict[str, Any]], None] | None = None,
) -> Trained:
    """Secure sums until every member is done, then ``hxgb.finish``; ``on_round`` gets each
    round's agreed status (``tree``, ``next``, ``valid_loss``)."""
    aggregator, updates = _setup(parties, members)
    out = Trained(rounds=0, valid_losses=[], saved={})
    max_rounds = 2 + params.n_estimators * (params.max_depth + 2)
    for rounds in range(1, max_rounds + 1):
        t0 = time.perf_counter()
        total = aggregator.sum([_released(updates[p], UPDATE) for p in members])
        out.aggregator_seconds += time.perf_counter() - t0
        updates = parties.call_many({p: ("hxgb.round", {}, []) for p in members}, plain=total)
        status = _agreed(updates)
        out.rounds = rounds
        if status.get("valid_loss") is not None:
            out.valid_losses.append(float(status["valid_loss"]))
        if on_round is not None:
            on_round(status)
        if status["next"] == "done":
            out.saved = _finish(parties, members)
            return out
    raise JobError(f"hxgb did not finish within {max_rounds} rounds")


def member_round(silo: HxgbSilo, total: Message | None) -> tuple[RoundStatus, Message | None]:
    """A member's ``hxgb.round``: take the pooled values, then its next update (None when done)."""
    if total is None:
        raise ProtocolError("hxgb.round needs the coordinator's sum")
    accept: dict[str, Callable[[Message], RoundStatus]] = {
        "bins": silo.accept_binning,
        "hist": silo.accept_histograms,
        "eval": silo.accept_eval,
    }
    phase = total.expect(SUM).meta.get("phase")
    if phase not in accept:
        raise ProtocolError("hxgb sum names no known phase")
    status = accept[str(phase)](total)
    updates: dict[str, Callable[[], Message]] = {
        "hist": silo.histogram_update,
        "eval": silo.eval_update,
    }
    return status, updates[status.next]() if status.next in updates else None


def model_digest(model: TreeEnsemble) -> str:
    """What members release so the coordinator can check they hold the same model."""
    return hashlib.sha256(json.dumps(model.to_dict(), sort_keys=True).encode()).hexdigest()[:32]
