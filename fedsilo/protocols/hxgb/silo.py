"""Horizontal XGBoost at a member silo: thin steps around
:class:`fedsilo.protocols.hxgb.training.HxgbSilo`.

The coordinator (``fedsilo.protocols.hxgb.driver``) runs every step at every member at once::

    hxgb.start     check the job (>= 3 members, this silo's policy), read the whole dataset, hold
                   out validation rows; the key holder makes the CKKS key: the secret context
                   sealed to each peer (outbox), the public context released to the coordinator
    hxgb.keys      the others take the secret context; everyone releases its binning update
    hxgb.round     given the coordinator's sum (``plain``): take it, release the next update
                   unless training is done; reply meta is the :class:`RoundStatus`
    hxgb.finish    store the whole model as this silo's part and write its xgboost export
    hxgb.evaluate  (the member the job names) score a held-out dataset locally, release headlines

Every parameter comes from the job spec this silo accepted at OpenJob (the coordinator only names
the step by index, :func:`fedsilo.protocols.hxgb.step.step_at`). What is released to the coordinator
is ledgered by the dispatcher: updates and the public context under their kinds, reply meta as
``job.released``. Decrypted sums stay in this process.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedsilo.errors import PolicyError, ProtocolError
from fedsilo.jobspec import part_id
from fedsilo.message import Message
from fedsilo.ml.ensemble import TreeEnsemble
from fedsilo.ml.xgb_export import to_xgboost_json
from fedsilo.protocols.evaluate.silo import check_evaluation_allowed, evaluate_whole_model
from fedsilo.protocols.hxgb.conversation import member_round, model_digest
from fedsilo.protocols.hxgb.step import ROLE, HxgbStep, key_holder, members_of, step_at
from fedsilo.protocols.hxgb.training import (
    PUBLIC_CONTEXT,
    SECRET_CONTEXT,
    HxgbSilo,
)
from fedsilo.silo_node.context import SiloContext
from fedsilo.silo_node.methods import CallReply, CallRequest, method
from fedsilo.silo_node.predict import register_whole_model
from fedsilo.silo_node.session import JobSession

__all__ = ["MODEL_KIND", "export_path"]

MODEL_KIND = "hxgb"
_STATE = "hxgb"
#: where the importance table of a whole model is filed (the report groups features by party)
_ALL_MEMBERS = "all members"


@dataclass
class _State:
    """This silo's training of one job: the protocol object and what it was built from."""

    silo: HxgbSilo
    step: HxgbStep
    columns: list[str]
    keys_from: str


def _state(session: JobSession) -> _State:
    state = session.state.get(_STATE)
    if not isinstance(state, _State):
        raise ProtocolError("hxgb step before hxgb.start")
    return state


def _holdout(n_rows: int, fraction: float, seed: int, party: str) -> np.ndarray:
    """Which of this silo's rows are validation rows: seeded by the job seed and the party."""
    salt = int.from_bytes(hashlib.sha256(party.encode()).digest()[:4], "big")
    return np.random.default_rng([seed, 2, salt]).random(n_rows) < fraction


def _build(ctx: SiloContext, session: JobSession, spec: HxgbStep, members: list[str]) -> _State:
    columns = ctx.job_columns(session)
    x, y = ctx.data.load_dataset(session.dataset, columns, with_label=True)
    assert y is not None
    valid = _holdout(len(y), spec.validation_fraction, spec.params.seed, ctx.party)
    ctx.config.policy.check_rows_per_statistic(int((~valid).sum()))
    has_valid = spec.validation_fraction > 0 and bool(valid.any())
    silo = HxgbSilo(
        x[~valid],
        y[~valid],
        params=spec.params,
        party=ctx.party,
        n_silos=len(members),
        feature_names=columns,
        x_valid=x[valid] if has_valid else None,
        y_valid=y[valid] if has_valid else None,
    )
    return _State(silo=silo, step=spec, columns=columns, keys_from=key_holder(members))


@method("hxgb.start", kinds=("hxgb",))
def start(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """Check the job and read the data; the key holder makes and shares the CKKS key."""
    if session.role != ROLE:
        raise PolicyError(f"hxgb needs role '{ROLE}', this silo has '{session.role}'")
    members = members_of(session.parties)  # refuses < 3 members before any data is read
    spec = step_at(session.spec.get("steps"), req.meta["step"])
    check_evaluation_allowed(ctx, spec.evaluate_on, ctx.job_columns(session))
    state = _build(ctx, session, spec, members)
    session.state[_STATE] = state
    # the same digest the bins round carries: lets the coordinator say "different columns" early
    meta = {"columns_digest": hashlib.sha256(json.dumps(state.columns).encode()).hexdigest()[:32]}
    if state.keys_from != ctx.party:
        return CallReply(meta=meta)
    secret, public = state.silo.create_keys()
    peers = [p for p in members if p != ctx.party]
    return CallReply(
        meta=meta,
        outbox={p: secret for p in peers},
        release=Message(PUBLIC_CONTEXT, blobs={"context": public}),
    )


@method("hxgb.keys", kinds=("hxgb",))
def keys(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """Take the job's key (unless this silo made it); release the encrypted binning update."""
    state = _state(session)
    if state.keys_from == ctx.party:
        if req.inbox:
            raise ProtocolError("the key holder expects no message in hxgb.keys")
    else:
        state.silo.accept_keys(req.message_from(state.keys_from, SECRET_CONTEXT))
    return CallReply(release=state.silo.binning_update())


@method("hxgb.round", kinds=("hxgb",))
def round_(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """One secure sum done: take the pooled values, then release the next update (if any)."""
    status, update = member_round(_state(session).silo, req.plain)
    return CallReply(meta=status.to_meta(), release=update)


# --- the model -----------------------------------------------------------------------------------


def export_path(ctx: SiloContext, model_id: str) -> Path:
    """``models/<model_id>.xgboost.json`` next to the silo's config (id made file-name safe)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", model_id).lstrip(".") or "model"
    return ctx.config.models / f"{safe}.xgboost.json"


def _write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a reader never sees half a model."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _importance(model: TreeEnsemble) -> dict[str, list[list[Any]]]:
    """Total gain and split count per used feature, for the evaluation report."""
    gain, count = model.get_score("total_gain"), model.get_score("weight")
    rows = [[name, gain[name], int(count[name])] for name in gain]
    return {_ALL_MEMBERS: sorted(rows, key=lambda r: -r[1])}


@method("hxgb.finish", kinds=("hxgb",))
def finish(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """Store the whole model (every member holds it) and its xgboost export (statistics stripped).

    Releases the tree count, the best iteration and a digest of the model, so the coordinator
    can check every member ended with the same model without seeing it.
    """
    state = _state(session)
    model_id = part_id(session.job_id, MODEL_KIND)
    model = state.silo.model()
    doc = model.to_dict()
    path = export_path(ctx, model_id)
    ctx.store.save_model_part(
        model_id,
        MODEL_KIND,
        {
            "columns": state.columns,
            "model": doc,
            "importance": _importance(model),
            "params": state.step.params.to_dict(),
            "export": path.name,
        },
    )
    _write_atomic(path, to_xgboost_json(model))
    return CallReply(
        meta={
            "trees": len(model.trees),
            "digest": model_digest(model),
            "best_iteration": model.info.get("best_iteration"),
            "export": f"models/{path.name}",
        }
    )


# --- evaluation and prediction -----------------------------------------------------------------


@method("hxgb.evaluate", kinds=("hxgb",))
def evaluate(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """Score the held-out dataset the accepted job names for this silo; release headlines only."""
    spec = step_at(session.spec.get("steps"), req.meta["step"])
    return CallReply(
        meta=evaluate_whole_model(
            ctx,
            session,
            kind=MODEL_KIND,
            target=spec.evaluate_on,
            part_id=part_id(session.job_id, MODEL_KIND),
            model=req.meta.get("model"),
            params=spec.params.to_dict(),
        )
    )


register_whole_model(
    MODEL_KIND,
    "horizontal XGBoost",
    lambda model, x: TreeEnsemble.from_dict(model).predict_proba(x),
)
