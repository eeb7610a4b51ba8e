"""Resuming inside a training step: the coordinator's side.

Silos checkpoint their own training state (``fedsilo.silo_node.training_checkpoint``); on a
resumed run each training step's setup reply says where that silo resumes (``resumed_at``). The
driver needs one answer from all of them before training goes on.
"""

from __future__ import annotations

from fedsilo.protocols.conversation import resume_point
from fedsilo.wire import StepPayload

__all__ = ["resumed_at"]


def resumed_at(replies: dict[str, StepPayload], unit: str) -> int:
    """The tree (epoch) every silo's setup reply says training resumes at; they must agree
    (:func:`fedsilo.protocols.conversation.resume_point`, which conversations call)."""
    return resume_point({p: r.meta for p, r in replies.items()}, unit)
