"""Vertical LR's message order, written once: the driver (over gRPC) and the in-process runner
(:func:`fedsilo.protocols.lr.local.run_vertical`) both run :func:`run`.

Setup: ``lr.setup`` at the label holder (its key to the passive silos; on a resumed run the
epoch it resumes at and the released history), ``lr.setup`` at the passives (told that epoch),
``lr.pair_seeds`` between passives. Per mini-batch: ``lr.partial`` (passives) -> ``lr.residuals``
(label holder) -> ``lr.gradient`` (passives) -> ``lr.open`` (label holder) -> ``lr.apply``
(passives); ``lr.end_epoch`` at the label holder after each epoch, ``lr.save`` everywhere at the
end. What each message reveals: :mod:`fedsilo.protocols.lr.vertical`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fedsilo.errors import JobError
from fedsilo.ml.lr_common import LRConfig, epoch_batches
from fedsilo.protocols.conversation import Call, Parties, addressed, resume_point

__all__ = ["Start", "run", "setup"]


@dataclass
class Start:
    """Where training starts: the common row count, the first epoch and the epochs done."""

    rows: int
    epoch: int
    history: list[dict[str, Any]]


def setup(parties: Parties, active: str, passives: Sequence[str]) -> Start:
    """Key to the passive silos, pair seeds between them; where (which epoch) training starts.

    On a resumed run the label holder says at which epoch its checkpoint resumes; the passive
    silos are told, and all must agree (:func:`resume_point`).
    """
    keyed = parties.call(active, "lr.setup")
    start_epoch = int(keyed.meta.get("resumed_at", 0))
    passive_meta = {"start_epoch": start_epoch}
    replies = parties.call_many({p: ("lr.setup", passive_meta, [keyed]) for p in passives})
    rows = {active: keyed.meta["rows"], **{p: r.meta["rows"] for p, r in replies.items()}}
    if len(set(rows.values())) != 1:
        raise JobError(f"silos hold different numbers of aligned rows: {rows}")
    resume_point({active: keyed.meta, **{p: r.meta for p, r in replies.items()}}, "epoch")
    mail = list(replies.values())
    seeded: dict[str, Call] = {
        p: ("lr.pair_seeds", {}, mail) for p in passives if addressed(replies, p)
    }
    if seeded:
        parties.call_many(seeded)
    history = [dict(h) for h in keyed.meta.get("history", [])][:start_epoch]
    if len(history) != start_epoch:
        raise JobError("the label holder resumed without the history of its epochs")
    return Start(rows=int(rows[active]), epoch=start_epoch, history=history)


def _batch(parties: Parties, active: str, passives: Sequence[str], epoch: int, batch: int) -> None:
    where = {"epoch": epoch, "batch": batch}
    partials = parties.call_many({p: ("lr.partial", where, []) for p in passives})
    residuals = parties.call(active, "lr.residuals", where, list(partials.values()))
    masked = parties.call_many({p: ("lr.gradient", {}, [residuals]) for p in passives})
    opened = parties.call(active, "lr.open", {}, list(masked.values()))
    parties.call_many({p: ("lr.apply", {}, [opened]) for p in passives})


def run(
    parties: Parties,
    *,
    active: str,
    passives: Sequence[str],
    config: LRConfig,
    on_start: Callable[[Start], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> Start:
    """Set up, train epoch by epoch until the label holder says stop (or ``config.max_iter``),
    save every party's part. Returns the rows and the whole released history (resumed epochs
    first); ``on_epoch`` gets each new epoch's released meta."""
    start = setup(parties, active, passives)
    if on_start is not None:
        on_start(start)
    history = start.history
    stopped = bool(history) and bool(history[-1].get("stop"))
    for epoch in range(start.epoch, 0 if stopped else config.max_iter):
        for batch in range(len(epoch_batches(start.rows, config.batch_size, epoch, config.seed))):
            _batch(parties, active, passives, epoch, batch)
        history.append(parties.call(active, "lr.end_epoch", {"epoch": epoch}).meta)
        if on_epoch is not None:
            on_epoch(history[-1])
        if history[-1]["stop"]:
            break
    parties.call_many({p: ("lr.save", {}, []) for p in sorted([active, *passives])})
    return start
