"""Vertical logistic regression at a silo: thin steps over :mod:`fedsilo.protocols.lr.vertical`.

The coordinator's driver (``fedsilo/protocols/lr/driver.py``) calls, per mini-batch:
``lr.partial`` at the passive silos, ``lr.residuals`` at the label holder, ``lr.gradient`` at the
passive silos, ``lr.open`` at the label holder and ``lr.apply`` at the passive silos; then
``lr.end_epoch`` at the label holder, and finally ``lr.save`` everywhere. The party objects live in
``session.state`` for the job; each silo stores only its own coefficients.

Resume: the label holder checkpoints its coefficients, intercept and epoch history at every
``lr.end_epoch``, a passive silo its coefficients after the last batch of every epoch
(``TrainingCheckpoint``). A session opened with ``resume=True`` restores them at ``lr.setup``: the
label holder replies the epoch it resumes at (with a new key pair), the coordinator relays it to
the passives as ``start_epoch``, and each replies where it resumed so the coordinator can check
they agree.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedsilo.errors import PolicyError, ProtocolError
from fedsilo.jobschema import check_step
from fedsilo.jobspec import part_id, train_alignments
from fedsilo.message import Message
from fedsilo.ml.explain import Contributions, feature_label
from fedsilo.ml.lr_common import LRConfig, sigmoid
from fedsilo.ml.woe import woe_matrix
from fedsilo.protocols.lr.scorecard import ScorecardInputs, woe_input
from fedsilo.protocols.lr.vertical import (
    GRADIENT_OPENED,
    MASKED_GRADIENT,
    PAIR_SEED,
    PARTIAL,
    PUBLIC_KEY,
    RESIDUALS,
    LabelHolder,
    PassiveParty,
    VerticalModelPart,
    mask_partial,
    sum_masked_partials,
)
from fedsilo.protocols.woe.silo import scorecard_inputs
from fedsilo.silo_node.context import SiloContext
from fedsilo.silo_node.methods import CallReply, CallRequest, method
from fedsilo.silo_node.predict import Predictor, PredictRequest, register_predictor
from fedsilo.silo_node.session import JobSession
from fedsilo.silo_node.training_checkpoint import TrainingCheckpoint

__all__ = ["KIND"]

KIND = "lr"
_STATE = "lr"
_CHECKPOINT = "lr.checkpoint"
_CONFIG = "lr.config"
_SCORECARD = "lr.scorecard"


def _active(session: JobSession) -> str:
    return session.active_party("vertical LR")


def _holder(session: JobSession) -> LabelHolder:
    party = session.state.get(_STATE)
    if not isinstance(party, LabelHolder):
        raise ProtocolError("this LR step is for the label holder, after lr.setup")
    return party


def _passive(session: JobSession) -> PassiveParty:
    party = session.state.get(_STATE)
    if not isinstance(party, PassiveParty):
        raise ProtocolError("this LR step is for a passive silo, after lr.setup")
    return party


def _position(session: JobSession, meta: dict[str, Any]) -> tuple[int, int]:
    """The (epoch, batch) the coordinator asks for, within the epochs the accepted job allows."""
    epoch, batch = int(meta["epoch"]), int(meta["batch"])
    config = session.state.get(_CONFIG)
    if not isinstance(config, LRConfig):
        raise ProtocolError("LR step before lr.setup")
    if not 0 <= epoch < config.max_iter or batch < 0:
        raise PolicyError(
            f"LR epoch {epoch} is outside the {config.max_iter} epochs the accepted job allows"
        )
    return epoch, batch


def _setup_inputs(session: JobSession, req: CallRequest) -> tuple[LRConfig, str, int]:
    """(config, training alignment, key bits) of the lr step, from the accepted job spec (its
    flat keys, checked by the job schema as at OpenJob)."""
    config = LRConfig.from_step(req.spec_step, req.step_index)
    bits = int(check_step(req.spec_step, req.step_index)["key_bits"])
    alignment, _valid = train_alignments(session.spec, req.step_index)
    return config, alignment, bits


@method("lr.setup", kinds=("lr",))
def setup(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """Load the aligned training rows; the label holder makes the key, passives take it."""
    config, alignment, bits = _setup_inputs(session, req)
    cols = ctx.job_columns(session, req.step_index)
    x = ctx.data.load_aligned(session.dataset, alignment, cols)
    card = scorecard_inputs(ctx, session, req, cols)
    if card is not None:
        session.state[_SCORECARD] = card
        x = woe_matrix(card.characteristics, card.woe, x)
    ctx.config.policy.check_rows_per_statistic(min(config.batch_size, x.shape[0]))
    passives = session.party_with_role("passive")
    fingerprinted = {
        "alignment": alignment,
        "params": config.to_spec(),
        "key_bits": bits,
        "step": req.step_index,
    }
    checkpoint = TrainingCheckpoint(ctx, session, "lr", fingerprinted)
    session.state[_CHECKPOINT] = checkpoint
    session.state[_CONFIG] = config
    if session.role == "active":
        ctx.config.policy.check_paillier_bits(bits)
        y = ctx.data.load_aligned_labels(session.dataset, alignment)
        holder = LabelHolder(
            x,
            y,
            feature_names=cols,
            config=config,
            passive_parties=passives,
            party=ctx.party,
            key_bits=bits,
        )
        stored = checkpoint.load()
        start = holder.restore(stored) if stored is not None else 0
        session.state[_STATE] = holder
        key = holder.public_key_message()
        meta = {
            "rows": int(x.shape[0]),
            "resumed_at": start,
            "history": [r.to_meta() for r in holder.history],  # released already, epoch by epoch
        }
        return CallReply(meta=meta, outbox={p: key for p in passives})
    if session.role != "passive":
        raise PolicyError(f"vertical LR has no role '{session.role}'")
    key_msg = req.message_from(_active(session), PUBLIC_KEY)
    passive = PassiveParty(
        x, party=ctx.party, feature_names=cols, config=config, passive_parties=passives
    )
    passive.accept_public_key(key_msg)
    ctx.config.policy.check_paillier_bits(passive.key_bits)
    start = passive.resume_at(checkpoint.load(), _start_epoch(req.meta))
    session.state[_STATE] = passive
    meta = {"rows": int(x.shape[0]), "resumed_at": start}
    return CallReply(meta=meta, outbox=passive.pair_seed_messages())


def _start_epoch(meta: dict[str, Any]) -> int:
    """The epoch the label holder resumes at, as the coordinator relays it (0 on a fresh run)."""
    start = meta.get("start_epoch", 0)
    if not isinstance(start, int) or isinstance(start, bool) or start < 0:
        raise ProtocolError("start_epoch must be an epoch number")
    return start


def _checkpoint(session: JobSession) -> TrainingCheckpoint:
    checkpoint = session.state.get(_CHECKPOINT)
    if not isinstance(checkpoint, TrainingCheckpoint):
        raise ProtocolError("LR step before lr.setup")
    return checkpoint


@method("lr.pair_seeds", kinds=("lr",))
def pair_seeds(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    passive = _passive(session)
    for sender, msg in req.inbox.items():
        passive.accept_pair_seed(sender, msg.expect(PAIR_SEED))
    return CallReply()


@method("lr.partial", kinds=("lr",))
def partial(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    epoch, batch = _position(session, req.meta)
    msg = _passive(session).partial_message(epoch, batch)
    return CallReply(outbox={_active(session): msg})


@method("lr.residuals", kinds=("lr",))
def residuals(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    holder = _holder(session)
    epoch, batch = _position(session, req.meta)
    partials = {s: m.expect(PARTIAL) for s, m in req.inbox.items()}
    msg = holder.residual_message(epoch, batch, partials)
    return CallReply(outbox={p: msg for p in holder.passive_parties})


@method("lr.gradient", kinds=("lr",))
def gradient(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    active = _active(session)
    msg = _passive(session).gradient_message(req.message_from(active, RESIDUALS))
    return CallReply(outbox={active: msg})


@method("lr.open", kinds=("lr",))
def open_gradients(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    masked = {s: m.expect(MASKED_GRADIENT) for s, m in req.inbox.items()}
    return CallReply(outbox=_holder(session).decrypt_gradients(masked))


@method("lr.apply", kinds=("lr",))
def apply(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    passive = _passive(session)
    passive.apply_gradient(req.message_from(_active(session), GRADIENT_OPENED))
    completed = passive.take_checkpoint()
    if completed is not None:  # the epoch's last batch: checkpoint before replying
        _checkpoint(session).save(completed)
    return CallReply()


@method("lr.end_epoch", kinds=("lr",))
def end_epoch(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """Released: the epoch's mean training loss and whether training stops."""
    holder = _holder(session)
    epoch = int(req.meta["epoch"])
    _position(session, {"epoch": epoch, "batch": 0})
    result = holder.end_epoch(epoch)
    _checkpoint(session).save(holder.checkpoint())
    return CallReply(meta=result.to_meta())


@method("lr.save", kinds=("lr",))
def save(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """Store this silo's part (its own features' coefficients; the intercept at the holder)."""
    party = session.state.get(_STATE)
    if not isinstance(party, LabelHolder | PassiveParty):
        raise ProtocolError("lr.save before lr.setup")
    part = party.model_part()
    payload = {
        "columns": part.feature_names,
        "part": part.to_dict(),
        "passive_parties": session.party_with_role("passive"),
    }
    card = session.state.get(_SCORECARD)
    if isinstance(card, ScorecardInputs):
        payload |= card.model_payload(part, session.role == "active")
    ctx.store.save_model_part(part_id(session.job_id, KIND), KIND, payload)
    return CallReply(meta={"saved": True})


# --- federated prediction (batch scoring, evaluation) -------------------------------------------
def _passives(payload: dict[str, Any]) -> list[str]:
    return sorted(str(p) for p in payload.get("passive_parties", []))


def _part(payload: dict[str, Any], x: np.ndarray, request: PredictRequest) -> Message:
    """A passive silo's partial linear score on the rows, masked as in training.

    With two or more passive silos each one's score is hidden behind pairwise masks that cancel
    in the label holder's sum, so it learns only the sum, as during training. The masks come
    from seeds agreed in this scoring job (``PredictRequest.pair_seed``, not the training job's,
    which died with its session) and the request's one-time label (model, alignment, rows).
    """
    u = VerticalModelPart.from_dict(payload["part"]).partial_score(woe_input(payload, x))
    peers = [p for p in _passives(payload) if p != request.party]
    return mask_partial(u, request.party, {p: request.pair_seed(p) for p in peers}, request.label)


def _combine(
    payload: dict[str, Any], x: np.ndarray, parts: dict[str, Message], request: PredictRequest
) -> np.ndarray:
    """Probabilities at the label holder: its own term (with the intercept) plus the parts' sum."""
    expected = _passives(payload)
    if sorted(parts) != expected:
        raise ProtocolError(f"LR prediction needs parts from {expected}, got {sorted(parts)}")
    z = VerticalModelPart.from_dict(payload["part"]).partial_score(woe_input(payload, x))
    kind = next(iter(parts.values())).kind if parts else PARTIAL
    z = z + sum_masked_partials(parts, expected, request.label, z.size, kind=kind)
    return sigmoid(z)


def _terms(part: VerticalModelPart, x: np.ndarray) -> np.ndarray:
    """Per-row, per-feature terms of a party's linear score (its intercept excluded)."""
    return np.asarray(part.standardizer.transform(x) * part.coef_standardised, dtype=np.float64)


def _explain_part(
    payload: dict[str, Any], x: np.ndarray, level: str, names: bool
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """What a passive silo adds to its part for explanations (its policy allowed ``level``):
    its unmasked partial score per row ("party"), or its per-feature terms ("feature"), with
    its column names only when it releases names."""
    part = VerticalModelPart.from_dict(payload["part"])
    terms = _terms(part, x)
    if level == "party":
        return {"explain": "party"}, {"explain_values": terms.sum(axis=1)}
    meta: dict[str, Any] = {"explain": "feature"}
    if names:
        meta["explain_names"] = list(part.feature_names)
    return meta, {"explain_values": terms}


def _passive_columns(
    party: str, msg: Message, rows: int
) -> tuple[list[str], list[str], np.ndarray] | None:
    """Columns a passive part released for explanations, or None when it released none."""
    level = msg.meta.get("explain")
    if level is None:
        return None
    values = np.asarray(msg.array("explain_values"), dtype=np.float64)
    if level == "party" and values.shape == (rows,):
        return [party], [party], values[:, None]
    if level == "feature" and values.ndim == 2 and values.shape[0] == rows:
        names = msg.meta.get("explain_names")
        shown = (
            [str(n) for n in names]
            if isinstance(names, list) and len(names) == values.shape[1]
            else None
        )
        labels = [
            feature_label(party, shown[j] if shown else "", j, shown is not None)
            for j in range(values.shape[1])
        ]
        return labels, [party] * len(labels), values
    raise ProtocolError(f"party '{party}' sent malformed explanation values")


def _explain(
    payload: dict[str, Any], x: np.ndarray, parts: dict[str, Message], request: PredictRequest
) -> Contributions:
    """Contributions to the margin at the label holder: its own features' terms by name; each
    passive party's per-feature terms or total where it released them; otherwise the passive
    parties' sum, which scoring reveals anyway (one passive party: its own total)."""
    expected = _passives(payload)
    if sorted(parts) != expected:
        raise ProtocolError(f"LR prediction needs parts from {expected}, got {sorted(parts)}")
    own = VerticalModelPart.from_dict(payload["part"])
    labels, owners = list(own.feature_names), [own.party] * len(own.feature_names)
    columns = [_terms(own, x)]
    kind = next(iter(parts.values())).kind if parts else PARTIAL
    rest = sum_masked_partials(parts, expected, request.label, len(x), kind=kind)
    released = {p: _passive_columns(p, parts[p], len(x)) for p in expected}
    if expected and all(c is not None for c in released.values()):
        for cols in released.values():
            assert cols is not None
            labels += cols[0]
            owners += cols[1]
            columns.append(cols[2])
        shown = np.hstack(columns[1:]).sum(axis=1)
        if not np.allclose(shown, rest, rtol=0, atol=1e-6):
            raise ProtocolError("released explanation values do not add up to the parts' sum")
    elif expected:
        who = expected[0] if len(expected) == 1 else "other parties"
        labels.append(who)
        owners.append(who)
        columns.append(rest[:, None])
    return Contributions(
        labels=labels,
        parties=owners,
        values=np.hstack(columns),
        bias=np.full(len(x), own.intercept_standardised),
    )


register_predictor(
    Predictor(kind=KIND, part=_part, combine=_combine, explain=_explain, explain_part=_explain_part)
)
