"""Resuming inside a training step: the coordinator's side.

Silos checkpoint their own training state (``fedsilo.silo_node.training_checkpoint``); on a
resumed run each training step's setup reply says where that silo resumes (``resumed_at``). The
driver needs one answer from all of them before training goes on.
"""

from __future__ import annotations

from fedsilo.errors import JobError
from fedsilo.wire import StepPayload

__all__ = ["resumed_at"]


def resumed_at(replies: dict[str, StepPayload], unit: str) -> int:
    """The tree (epoch) every silo's setup reply says training resumes at; they must agree.

    Silos that disagree (one lost its checkpoint, or holds an older one) cannot continue one
    training together: the resumed run is refused, and a fresh run (no ``--resume``) trains anew.
    """
    at = {p: int(r.meta.get("resumed_at", 0)) for p, r in replies.items()}
    if len(set(at.values())) > 1:
        said = ", ".join(f"{p} at {unit} {k}" for p, k in sorted(at.items()))
        raise JobError(f"silos disagree where training resumes ({said}); rerun without resume")
    return next(iter(at.values()), 0)
