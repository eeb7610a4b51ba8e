"""Horizontal LR's message order, written once: the driver (over gRPC) and the in-process runner
(:func:`fedsilo.protocols.hlr.local.run_horizontal`) both run :func:`run`.

``hlr.setup`` at the first member (it makes the CKKS key: the secret context to the others, the
public context released to the coordinator), then at the others; then one ``hlr.round`` per
secure sum at every member at once: the coordinator hands the previous sum back and each member
releases its next contribution (statistics, then model updates), which the coordinator adds
(:func:`~fedsilo.protocols.hlr.horizontal.aggregate`, public context only) until the members
report convergence; ``hlr.save`` everywhere. A member's side of a round is :func:`member_round`,
which the silo step and the in-process runner share.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fedsilo.errors import JobError, ProtocolError
from fedsilo.leakage import register_kind
from fedsilo.message import Message
from fedsilo.protocols.conversation import Parties
from fedsilo.protocols.hlr.horizontal import STATS_PHASES, SUM, HorizontalSilo, aggregate

__all__ = ["PUBLIC_CONTEXT", "member_round", "run"]

PUBLIC_CONTEXT = register_kind(
    "hlr.public_context",
    reveals="to the coordinator: the job's CKKS parameters without the secret key or any "
    "evaluation key (enough to add ciphertexts, not to read them)",
)


def _quiet(message: str) -> None:
    """No log."""


def _setup(parties: Parties, members: Sequence[str]) -> bytes:
    """Key at the first member, secret context to the others; returns the public context."""
    first = parties.call(members[0], "hlr.setup")
    rest = parties.call_many({p: ("hlr.setup", {}, [first]) for p in members[1:]})
    digests = {first.meta["columns_digest"], *(r.meta["columns_digest"] for r in rest.values())}
    if len(digests) != 1:
        raise JobError("horizontal LR silos name different feature columns")
    if first.released is None:
        raise JobError(f"'{members[0]}' released no public CKKS context")
    return first.released.expect(PUBLIC_CONTEXT).blob("context")


def _round(
    parties: Parties,
    members: Sequence[str],
    public: bytes,
    meta: dict[str, Any],
    previous: Message | None,
) -> tuple[Message | None, dict[str, Any]]:
    """One relay: the previous sum out, contributions in; returns (their sum, released meta)."""
    replies = parties.call_many({p: ("hlr.round", meta, []) for p in members}, plain=previous)
    released = [r.meta for r in replies.values()]
    if any(m != released[0] for m in released):
        raise JobError("horizontal LR silos disagree about the model's progress")
    contributions = [r.released for r in replies.values() if r.released is not None]
    if not contributions:
        return None, released[0]
    if len(contributions) != len(members):
        raise JobError("some horizontal LR silos released no contribution")
    return aggregate(public, contributions), released[0]


def run(
    parties: Parties,
    members: Sequence[str],
    *,
    max_iter: int,
    log: Callable[[str], None] = _quiet,
    on_round: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Key, pooled statistics, FedAvg rounds until convergence, save; returns the last round's
    released meta (``round``, ``max_change``, ``converged``, ...). ``on_round`` gets each."""
    public = _setup(parties, members)
    total: Message | None = None
    for index in range(STATS_PHASES):
        total, _ = _round(parties, members, public, {"next": "stats", "index": index}, total)
    log(f"hlr: pooled standardisation over {len(members)} silos done")
    progress: dict[str, Any] = {}
    for index in range(max_iter + 1):
        total, progress = _round(parties, members, public, {"next": "round", "index": index}, total)
        if progress and on_round is not None:
            on_round(progress)
        if total is None:
            break
        if progress:
            log(f"hlr round {progress['round']}: largest change {progress['max_change']:.2e}")
    parties.call_many({p: ("hlr.save", {}, []) for p in members})
    return progress


def _accept(silo: HorizontalSilo, plain: Message | None) -> dict[str, Any]:
    if plain is None:
        return {}
    phase = plain.expect(SUM).meta.get("phase")
    if phase == "stats":
        silo.accept_stats(plain)
        return {}
    return silo.accept_update(plain).to_meta()


def member_round(
    silo: HorizontalSilo, plain: Message | None, phase: str, index: int
) -> tuple[dict[str, Any], Message | None]:
    """A member's ``hlr.round``: take the last sum (if any), then the contribution the coordinator
    asks for. Returns (released meta, released contribution or None once converged)."""
    released = _accept(silo, plain)
    if released.get("converged") or phase == "done":
        return released, None
    if phase == "stats" and 0 <= index < STATS_PHASES:
        return released, silo.stats_message(index)
    if phase == "round":
        update = silo.update_message()
        if update.meta.get("index") != index:
            raise ProtocolError(
                f"coordinator asked for round {index}, silo is at {update.meta.get('index')}"
            )
        return released, update
    raise ProtocolError(f"no horizontal LR contribution '{phase}' {index}")
