"""SecureBoost at a silo: thin steps over :mod:`fedsilo.protocols.secureboost.active`.

The coordinator's driver (``fedsilo/protocols/secureboost/driver.py``) calls ``sgb.setup``
at the label holder, then at the passive silos with its setup message; then alternates
``sgb.step`` at the label holder with ``sgb.handle`` at the silos it addressed, relaying the sealed
messages, until the label holder says it is done; finally ``sgb.save`` everywhere. The party
objects live in ``session.state``; each silo stores only its own part of the model:
the label holder the trees (shapes, leaf values, its own thresholds), a passive silo the
thresholds of the splits it owns.

Resume: every silo checkpoints after each completed tree (``TrainingCheckpoint``; the label holder
its trees, margins and early-stopping state when ``sgb.step`` completes a tree, a passive silo its
split table after every gradients and split message). A session opened with ``resume=True``
restores them at ``sgb.setup``: the label holder resumes after its last completed tree (a new
Paillier key pair: split tables and exact histograms do not depend on the key), tells the passives
in its setup message, and every silo replies ``resumed_at`` so the coordinator can check they
agree.

Policy: the label holder's key size is checked by every silo against ``min_paillier_bits``; a
passive silo sends no histogram for a node with fewer rows than ``min_rows_per_statistic`` and
shows its feature names only with ``release_feature_names``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fedsilo.errors import PolicyError, ProtocolError
from fedsilo.jobspec import part_id, train_alignments
from fedsilo.message import Message
from fedsilo.ml.explain import Contributions
from fedsilo.protocols.secureboost.active import (
    ActiveParty,
    PassiveParty,
    SecureBoostParams,
    read_routes,
    routes_message,
)
from fedsilo.protocols.secureboost.model import SecureBoostModel, SplitTable
from fedsilo.protocols.secureboost.params import secureboost_params
from fedsilo.protocols.secureboost.wire import GRADIENTS, SPLIT
from fedsilo.silo_node.context import SiloContext
from fedsilo.silo_node.methods import CallReply, CallRequest, method
from fedsilo.silo_node.predict import Predictor, PredictRequest, register_predictor
from fedsilo.silo_node.session import JobSession
from fedsilo.silo_node.training_checkpoint import TrainingCheckpoint

__all__ = ["KIND"]

KIND = "secureboost"
_STATE = "secureboost"
_CHECKPOINT = "secureboost.checkpoint"


@dataclass(frozen=True)
class _Inputs:
    """What ``sgb.setup`` trains on, all read from the accepted job spec."""

    params: SecureBoostParams
    train: str
    valid: str | None

    def fingerprint_source(self, index: int) -> dict[str, Any]:
        return {
            "params": self.params.to_dict(),
            "alignment": self.train,
            "valid_alignment": self.valid,
            "step": index,
        }


def _inputs(session: JobSession, req: CallRequest) -> _Inputs:
    train, valid = train_alignments(session.spec, req.step_index)
    return _Inputs(secureboost_params(req.spec_step, req.step_index), train, valid)


def _rows(
    ctx: SiloContext, session: JobSession, inputs: _Inputs, cols: list[str]
) -> tuple[np.ndarray, int]:
    """Training rows then validation rows (if any), and how many training rows there are."""
    train = ctx.data.load_aligned(session.dataset, inputs.train, cols)
    if not inputs.valid:
        return train, len(train)
    valid = ctx.data.load_aligned(session.dataset, inputs.valid, cols)
    return np.vstack([train, valid]), len(train)


def _labels(ctx: SiloContext, session: JobSession, inputs: _Inputs) -> np.ndarray:
    y = ctx.data.load_aligned_labels(session.dataset, inputs.train)
    if inputs.valid:
        y = np.concatenate([y, ctx.data.load_aligned_labels(session.dataset, inputs.valid)])
    return y


@method("sgb.setup", kinds=("secureboost",))
def setup(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """Load the aligned rows; the label holder makes its key and the passives their bins."""
    inputs = _inputs(session, req)
    params = inputs.params
    ctx.config.policy.check_paillier_bits(params.key_bits)
    cols = ctx.job_columns(session, req.step_index)
    x, n_train = _rows(ctx, session, inputs, cols)
    ctx.config.policy.check_rows_per_statistic(n_train)
    checkpoint = TrainingCheckpoint(ctx, session, "sgb", inputs.fingerprint_source(req.step_index))
    session.state[_CHECKPOINT] = checkpoint
    stored = checkpoint.load()
    if session.role == "active":
        valid = np.arange(n_train, len(x)) if len(x) > n_train else None
        active = ActiveParty(
            ctx.party,
            x,
            _labels(ctx, session, inputs),
            params=params,
            passives=session.party_with_role("passive"),
            feature_names=cols,
            valid_rows=valid,
        )
        start = active.restore(stored) if stored is not None else 0
        session.state[_STATE] = active
        meta = {"rows": n_train, "resumed_at": start}
        return CallReply(meta=meta, outbox=active.step())
    if session.role != "passive":
        raise PolicyError(f"SecureBoost has no role '{session.role}'")
    policy = ctx.config.policy
    passive = PassiveParty(
        ctx.party,
        x,
        feature_names=cols,
        reveal_feature_names=policy.release_feature_names,
        min_node_rows=policy.min_rows_per_statistic,
        insecure_min_key_bits=policy.min_paillier_bits,
    )
    if stored is not None:
        passive.restore(stored)
    session.state[_STATE] = passive
    answer = _answer(session, passive, req)
    answer.meta["resumed_at"] = passive.start_tree
    return answer


def _answer(session: JobSession, passive: PassiveParty, req: CallRequest) -> CallReply:
    """Handle the label holder's message; checkpoint once the split table or tree moved on."""
    active = session.active_party("SecureBoost")
    msg = req.inbox.get(active)
    if msg is None:
        raise ProtocolError("SecureBoost step expected a message from the label holder")
    reply = passive.handle(msg)
    if msg.kind in (GRADIENTS, SPLIT):
        _checkpoint(session).save(passive.checkpoint())
    return CallReply(outbox={active: reply} if reply is not None else {})


def _checkpoint(session: JobSession) -> TrainingCheckpoint:
    checkpoint = session.state.get(_CHECKPOINT)
    if not isinstance(checkpoint, TrainingCheckpoint):
        raise ProtocolError("SecureBoost step before sgb.setup")
    return checkpoint


@method("sgb.step", kinds=("secureboost",))
def advance(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """The label holder takes the replies and says what goes out next (or that it is done)."""
    active = session.state.get(_STATE)
    if not isinstance(active, ActiveParty):
        raise ProtocolError("sgb.step is for the label holder, after sgb.setup")
    outbox = active.step(req.inbox)
    completed = active.take_checkpoint()
    if completed is not None:  # a tree was completed: saved before its successor starts out
        _checkpoint(session).save(completed)
    return CallReply(meta={"done": active.done, "trees": active.model.n_trees}, outbox=outbox)


@method("sgb.handle", kinds=("secureboost",))
def handle(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    passive = session.state.get(_STATE)
    if not isinstance(passive, PassiveParty):
        raise ProtocolError("sgb.handle is for a passive silo, after sgb.setup")
    return _answer(session, passive, req)


@method("sgb.save", kinds=("secureboost",))
def save(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """Store this silo's part; the label holder releases the model's size and its metrics."""
    party = session.state.get(_STATE)
    model_id = part_id(session.job_id, KIND)
    if isinstance(party, ActiveParty):
        if not party.done:
            raise ProtocolError("sgb.save before training finished")
        model = party.model
        payload = {
            "columns": [f.name for f in model.features if f.party == ctx.party],
            "model": model.to_dict(),
            "passive_parties": party.passives,
            "importance": _importance(model),
        }
        ctx.store.save_model_part(model_id, KIND, payload)
        return CallReply(meta={"trees": model.n_trees, "metrics": dict(model.metrics)})
    if isinstance(party, PassiveParty):
        ctx.store.save_model_part(
            model_id, KIND, {"columns": party.feature_names, "part": party.model_part()}
        )
        return CallReply(meta={"saved": True})
    raise ProtocolError("sgb.save before sgb.setup")


def _importance(model: SecureBoostModel) -> dict[str, list[tuple[str, float, int]]]:
    """Per party: (feature as shown, total gain, splits), for the label holder's report."""
    gain, count = model.feature_importances("gain"), model.feature_importances("weight")
    out: dict[str, list[tuple[str, float, int]]] = {}
    for f in model.features:
        if f.name in gain:
            out.setdefault(f.party, []).append((f.name, gain[f.name], int(count[f.name])))
    return out


# --- federated prediction (batch scoring, evaluation) -------------------------------------------


def _part(payload: dict[str, Any], x: np.ndarray, request: PredictRequest) -> Message:
    """A passive silo's answer: the side each row takes at every node it owns."""
    return routes_message(SplitTable.from_dict(payload["part"]), x)


def _routes(
    model: SecureBoostModel, payload: dict[str, Any], x: np.ndarray, parts: dict[str, Message]
) -> dict[tuple[int, int], np.ndarray]:
    """The left mask of every split node: the label holder's own, and the others' answers."""
    expected = sorted(str(p) for p in payload.get("passive_parties", []))
    if sorted(parts) != expected:
        raise ProtocolError(
            f"SecureBoost prediction needs parts from {expected}, got {sorted(parts)}"
        )
    routes = model.own_splits.route(x)
    for party, msg in parts.items():
        for key, mask in read_routes(msg, len(x), kind=None).items():
            t, node = key
            if not (
                0 <= t < model.n_trees
                and node in model.trees[t].split_nodes()
                and model.features[model.trees[t].feature[node]].party == party
            ):
                raise ProtocolError(f"party '{party}' answered for a node it does not own")
            routes[key] = mask
    return routes


def _combine(
    payload: dict[str, Any], x: np.ndarray, parts: dict[str, Message], request: PredictRequest
) -> np.ndarray:
    """Probabilities at the label holder from its trees, its own splits and the others' routes."""
    model = SecureBoostModel.from_dict(payload["model"])
    return model.predict_proba(len(x), _routes(model, payload, x, parts))


def _explain(
    payload: dict[str, Any], x: np.ndarray, parts: dict[str, Message], request: PredictRequest
) -> Contributions:
    """Exact TreeSHAP per row from the same routes (nothing more is asked of any silo)."""
    model = SecureBoostModel.from_dict(payload["model"])
    return model.explain(len(x), _routes(model, payload, x, parts))


register_predictor(Predictor(kind=KIND, part=_part, combine=_combine, explain=_explain))
