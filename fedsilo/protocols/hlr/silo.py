"""Horizontal logistic regression at a silo: thin steps over
:mod:`fedsilo.protocols.hlr.horizontal`.

``hlr.setup`` loads the silo's whole dataset; the first member (by name) makes the CKKS key, sends
the secret context sealed to the others and releases the public context to the coordinator.
``hlr.round`` takes the previous secure sum (an unsealed message from the coordinator, if any)
and releases the silo's next encrypted contribution (statistics, then model updates) until the
silos agree the model has converged. ``hlr.save`` stores the whole model at every silo.
``hlr.evaluate`` (at the member the step's ``evaluate_on`` names) scores a held-out dataset
locally and releases headline metrics only (:func:`~fedsilo.protocols.evaluate.silo.
evaluate_whole_model`, shared with ``hxgb``).

Parameters and the evaluation target come from the job spec this silo accepted at OpenJob; the
coordinator names the step by its index (:func:`fedsilo.protocols.hlr.step.step_at`).
"""

from __future__ import annotations

import hashlib

from fedsilo.errors import PolicyError, ProtocolError
from fedsilo.jobspec import part_id
from fedsilo.message import Message
from fedsilo.protocols.evaluate.silo import check_evaluation_allowed, evaluate_whole_model
from fedsilo.protocols.hlr.conversation import PUBLIC_CONTEXT, member_round
from fedsilo.protocols.hlr.horizontal import (
    SECRET_CONTEXT,
    HorizontalLRModel,
    HorizontalSilo,
    check_silo_count,
)
from fedsilo.protocols.hlr.step import step_at
from fedsilo.silo_node.context import SiloContext
from fedsilo.silo_node.methods import CallReply, CallRequest, method
from fedsilo.silo_node.predict import register_whole_model
from fedsilo.silo_node.session import JobSession

__all__ = ["KIND", "PUBLIC_CONTEXT"]

KIND = "hlr"
_STATE = "hlr"


def columns_digest(columns: list[str]) -> str:
    """What silos release so the coordinator can check they train on the same features."""
    return hashlib.sha256("\x00".join(columns).encode()).hexdigest()[:16]


def _silo(session: JobSession) -> HorizontalSilo:
    silo = session.state.get(_STATE)
    if not isinstance(silo, HorizontalSilo):
        raise ProtocolError("this horizontal LR step comes before hlr.setup")
    return silo


@method("hlr.setup", kinds=("hlr",))
def setup(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    if session.role != "member":
        raise PolicyError(f"horizontal LR has no role '{session.role}'")
    members = session.party_with_role("member")
    check_silo_count(len(members))
    spec = step_at(session.spec.get("steps"), req.meta.get("step"))
    cols = ctx.job_columns(session)
    check_evaluation_allowed(ctx, spec.evaluate_on, cols)  # before any data is read
    x, y = ctx.data.load_dataset(session.dataset, cols, with_label=True)
    assert y is not None
    ctx.config.policy.check_rows_per_statistic(x.shape[0])
    silo = HorizontalSilo(
        x, y, feature_names=cols, config=spec.config, party=ctx.party, n_silos=len(members)
    )
    session.state[_STATE] = silo
    meta = {"features": len(cols), "columns_digest": columns_digest(cols)}
    if ctx.party != members[0]:
        silo.accept_keys(req.message_from(members[0], SECRET_CONTEXT))
        return CallReply(meta=meta)
    secret, public = silo.create_keys()
    return CallReply(
        meta=meta,
        outbox={p: secret for p in members[1:]},
        release=Message(PUBLIC_CONTEXT, blobs={"context": public}),
    )


@method("hlr.round", kinds=("hlr",))
def round_step(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """Take the last sum (if any), then release the contribution the coordinator asks for."""
    released, contribution = member_round(
        _silo(session), req.plain, str(req.meta["next"]), int(req.meta["index"])
    )
    return CallReply(meta=released, release=contribution)


@method("hlr.save", kinds=("hlr",))
def save(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """Store the whole model (every silo holds the same one)."""
    model = _silo(session).model()
    payload = {"columns": model.feature_names, "model": model.to_dict()}
    ctx.store.save_model_part(part_id(session.job_id, KIND), KIND, payload)
    return CallReply(meta={"saved": True})


@method("hlr.evaluate", kinds=("hlr",))
def evaluate(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """Score the held-out dataset the accepted job names for this silo; release headlines only."""
    spec = step_at(session.spec.get("steps"), req.meta.get("step"))
    return CallReply(
        meta=evaluate_whole_model(
            ctx,
            session,
            kind=KIND,
            target=spec.evaluate_on,
            part_id=part_id(session.job_id, KIND),
            model=req.meta.get("model"),
            params=spec.config.to_spec(),
        )
    )


register_whole_model(
    KIND, "horizontal LR", lambda model, x: HorizontalLRModel.from_dict(model).predict_proba(x)
)
