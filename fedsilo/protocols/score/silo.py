"""Batch scoring steps: plan the chunks still to do, predict a chunk, write it.

Idempotent and resumable: scores go to ``(id, score, model_version, scored_at)`` rows keyed by
``(id, model_version)``, one transaction per chunk, insert-or-ignore. A rerun after a crash asks
for the plan again and skips every chunk already complete.

A whole model (horizontal kinds) scores at one member alone: ``score.local_alignment`` stores
the member's own dataset ids, sorted, as an alignment, so that the same plan / chunk path (and
its resumability) works without PSI and without any other silo.

A cancelled job (``fedsilo jobs cancel``) leaves no partial score table: ``score.abort``
deletes the rows this job's session wrote, and the table if the session created it and it is
left empty. A failed job keeps its rows, for ``--resume``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from fedsilo.errors import NotFound, PolicyError, ProtocolError
from fedsilo.jobschema import check_step
from fedsilo.jobspec import (
    chunk_rows,
    part_id,
    score_alignment,
    score_table,
    test_alignment,
    trained_kind,
)
from fedsilo.leakage import register_kind
from fedsilo.message import Message
from fedsilo.ml.explain import Contributions, reason_codes
from fedsilo.ml.woe import ScoreScale
from fedsilo.protocols.lr.scorecard import party_points
from fedsilo.silo_node.context import SiloContext
from fedsilo.silo_node.methods import CallReply, CallRequest, method
from fedsilo.silo_node.predict import PredictRequest, get_predictor, load_part, read_range
from fedsilo.silo_node.session import JobSession

__all__ = ["EXPLAINED_PART_KIND", "PART_KIND", "ExplainSettings", "explain_scores"]

PART_KIND = register_kind(
    "predict.part",
    reveals="for the rows being scored, what the label holder needs to finish the model's "
    "prediction from this silo's part (per model kind: the side each row takes at the tree "
    "nodes this silo owns, or this silo's partial linear score, masked so that with two or "
    "more passive silos only their sum is revealed); for a scorecard being scored, with the "
    "sender's [policy] release_points_per_party, also its points per row",
)
EXPLAINED_PART_KIND = register_kind(
    "predict.explained_part",
    reveals="a predict.part plus, because the accepted score step asks for explanations "
    "(explain = party / feature) and this silo's policy allows it, this silo's unmasked "
    "partial linear score per scored row (release_partial_scores) or its per-feature terms "
    "per scored row (release_feature_contributions; column names only with "
    "release_feature_names)",
)
#: what the label holder accepts as a part
_PART_KINDS = (PART_KIND, EXPLAINED_PART_KIND)


def _expected_alignment(session: JobSession, req: CallRequest) -> str | None:
    """The alignment the accepted job's evaluate or score step works on."""
    if req.spec_step.get("kind") == "evaluate":
        return test_alignment(session.spec, req.step_index)
    return score_alignment(session.spec, req.step_index, session.job_id)


def check_target(session: JobSession, req: CallRequest, model_id: str, alignment: str) -> None:
    """Refuse a prediction over rows or with a model the accepted step does not name.

    The alignment is always derived from the spec (the step's own, the split's test part, the
    PSI alignment); the model part too when the model was trained in this job. A model of an
    earlier job is named by the coordinator's registry; then only this silo's stored part of
    that id can be used, and evaluation checks its kind against the policy.
    """
    wanted = _expected_alignment(session, req)
    if alignment != wanted:
        raise PolicyError(
            f"prediction over alignment '{alignment[:80]}', but the accepted "
            f"{req.spec_step.get('kind')} step works on '{str(wanted)[:80]}'"
        )
    trained = trained_kind(session.spec, req.step_index)
    if trained is not None and model_id != part_id(session.job_id, trained):
        raise PolicyError(
            f"prediction with model part '{model_id[:80]}', but the accepted step uses the "
            f"{trained} model this job trained"
        )


def request_of(ctx: SiloContext, session: JobSession, req: CallRequest) -> PredictRequest:
    """The predictor's view of this request (which rows, in which job, with which keys), once
    the rows and the model are shown to be those of the accepted step."""
    model_id, alignment, start, stop = _range(req.meta)
    check_target(session, req, model_id, alignment)
    return PredictRequest(
        job_id=session.job_id,
        model_id=model_id,
        alignment=alignment,
        start=start,
        stop=stop,
        party=ctx.party,
        keys=session.keys,
    )


def _range(meta: dict[str, object]) -> tuple[str, str, int, int]:
    try:
        model_id, alignment = str(meta["model_id"]), str(meta["alignment"])
        start, stop = int(meta["start"]), int(meta["stop"])  # type: ignore[call-overload]
    except (KeyError, TypeError, ValueError):
        raise ProtocolError("prediction step needs model_id, alignment, start and stop") from None
    if not 0 <= start <= stop:
        raise ProtocolError("prediction range is empty or negative")
    return model_id, alignment, start, stop


@method("predict.part", kinds=("evaluate", "score"))
def predict_part(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """At a silo holding part of the model: its contribution for a range of aligned rows."""
    request = request_of(ctx, session, req)
    kind, payload = load_part(ctx, request.model_id)
    check_model_kind(ctx, session, req, kind)
    predictor = get_predictor(kind)
    if predictor.part is None:
        raise ProtocolError(f"model kind '{kind}' has no per-silo prediction part")
    X = read_range(ctx, session, payload, request.alignment, request.start, request.stop)
    msg = predictor.part(payload, X, request)
    msg.kind = PART_KIND
    level = explain_settings(req).level
    if level != "none" and predictor.explain_part is not None:
        policy = ctx.config.policy
        policy.check_explain_release(level)
        meta, arrays = predictor.explain_part(payload, X, level, policy.release_feature_names)
        msg = Message(
            EXPLAINED_PART_KIND,
            meta={**msg.meta, **meta},
            arrays={**msg.arrays, **arrays},
            blobs=dict(msg.blobs),
        )
    points = party_points(payload, X) if req.spec_step.get("kind") == "score" else None
    if points is not None and ctx.config.policy.release_points_per_party:
        msg.arrays["points"] = points  # this silo's scorecard points per row, unmasked
    return CallReply(outbox={p: msg for p in session.party_with_role("active")})


@dataclass(frozen=True)
class ExplainSettings:
    """The accepted step's explanation keys (an ``evaluate`` step has none: their defaults)."""

    reasons: int = 0
    codes: Mapping[str, str] | None = None
    adverse: str = "high"
    level: str = "none"


def explain_settings(req: CallRequest) -> ExplainSettings:
    """Read from the accepted spec's step, never from the coordinator's meta."""
    if req.spec_step.get("kind") != "score":
        return ExplainSettings()
    values = check_step(req.spec_step, req.step_index)
    codes = values.get("reason_codes")
    return ExplainSettings(
        reasons=int(values["reasons"]),
        codes={str(k): str(v) for k, v in codes.items()} if codes else None,
        adverse=str(values["adverse"]),
        level=str(values["explain"]),
    )


def check_model_kind(ctx: SiloContext, session: JobSession, req: CallRequest, kind: str) -> None:
    """Evaluation runs a model's federated prediction: its kind must be one this silo's policy
    allows (scoring is allowed by the ``score`` protocol itself, checked for every call)."""
    if req.spec_step.get("kind") == "evaluate":
        ctx.config.policy.check_protocol(kind, session.role)


def predict_scores(ctx: SiloContext, session: JobSession, req: CallRequest) -> np.ndarray:
    """At the label holder: the model's scores for the requested range (shared with evaluate)."""
    return _predict(ctx, session, req, explain=False)[0]


def explain_scores(
    ctx: SiloContext, session: JobSession, req: CallRequest
) -> tuple[np.ndarray, Contributions | None]:
    """At the label holder: scores, and the contributions behind them when the model kind can
    explain itself (None otherwise), from the same rows and parts."""
    return _predict(ctx, session, req, explain=True)


def _predict(
    ctx: SiloContext, session: JobSession, req: CallRequest, *, explain: bool
) -> tuple[np.ndarray, Contributions | None]:
    request = request_of(ctx, session, req)
    rows = request.stop - request.start
    kind, payload = load_part(ctx, request.model_id)
    check_model_kind(ctx, session, req, kind)
    X = read_range(ctx, session, payload, request.alignment, request.start, request.stop)
    parts = {sender: _expect_part(msg) for sender, msg in req.inbox.items()}
    predictor = get_predictor(kind)
    scores = np.asarray(predictor.combine(payload, X, parts, request), dtype=np.float64)
    if scores.shape != (rows,):
        raise ProtocolError(f"predictor returned {scores.shape} scores for {rows} rows")
    if not explain or predictor.explain is None:
        return scores, None
    contribs = predictor.explain(payload, X, parts, request)
    if contribs.n_rows != rows:
        raise ProtocolError(f"explainer returned {contribs.n_rows} rows for {rows}")
    return scores, contribs


def _expect_part(msg: Message) -> Message:
    if msg.kind not in _PART_KINDS:
        return msg.expect(PART_KIND)  # the one error for a wrong kind
    return msg


@method("score.local_alignment", kinds=("score",))
def local_alignment(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """At a member scoring alone: every id of its dataset, sorted, stored as ``alignment``.

    Sorted for the same reason PSI sorts: the chunks of a rerun are the same chunks. A resumed
    job finds the alignment it stored before and keeps it (the plan then skips what is done);
    an alignment of that name made by another job or over another dataset is refused, never
    replaced. Releases the row count only.
    """
    if session.role != "member":
        raise PolicyError(
            f"a local alignment is for a member scoring alone, not role '{session.role}'"
        )
    name = score_alignment(session.spec, req.step_index, session.job_id)
    if name != f"{session.job_id}-local":
        raise PolicyError("the accepted score step names an alignment: no local one is made")
    try:
        info = ctx.store.alignment_info(name)
    except NotFound:
        ids = sorted(i for chunk in ctx.data.iter_ids(session.dataset) for i in chunk)
        info = ctx.store.save_alignment(name, session.job_id, session.dataset, ids)
        return CallReply(meta={"rows": info.rows, "reused": False})
    if info.job_id != session.job_id or info.dataset != session.dataset:
        raise PolicyError(
            f"alignment '{name[:80]}' already exists at '{ctx.party}' for another job or dataset"
        )
    return CallReply(meta={"rows": info.rows, "reused": True})


@method("score.plan", kinds=("score",))
def plan(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """The chunks of the alignment that are not completely scored yet for this model version."""
    alignment = score_alignment(session.spec, req.step_index, session.job_id)
    table = score_table(session.spec, req.step_index)
    version = str(req.meta["version"])
    chunk = _chunk_rows(session, req)
    reasons = explain_settings(req).reasons
    if reasons:
        _check_explains(ctx, str(req.meta.get("model_id", "")))
    if not ctx.store.score_table_exists(table):
        session.state.setdefault("score_created", []).append(table)
    ctx.store.ensure_score_table(table, reasons=reasons)
    done = ctx.store.scored_ids(table, version)
    pending, start = [], 0
    for ids in ctx.store.iter_alignment_ids(alignment, chunk_rows=chunk):
        if not all(i in done for i in ids):
            pending.append([start, start + len(ids)])
        start += len(ids)
    return CallReply(meta={"rows": start, "pending": pending, "already_scored": len(done)})


@method("score.chunk", kinds=("score",))
def score_chunk(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """Predict one chunk and write it in one transaction (insert-or-ignore)."""
    _model_id, alignment, start, stop = _range(req.meta)
    settings = explain_settings(req)
    reasons: list[list[str | None]] | None = None
    if settings.reasons:
        scores, contribs = explain_scores(ctx, session, req)
        if contribs is None:
            raise PolicyError(_NO_EXPLAINER)
        reasons = reason_codes(contribs, settings.reasons, settings.codes, settings.adverse)
    else:
        scores = predict_scores(ctx, session, req)
    ids = _ids_in_range(ctx, alignment, start, stop)
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    version = str(req.meta["version"])
    rows = [(i, float(s), version, stamp) for i, s in zip(ids, scores, strict=True)]
    table = score_table(session.spec, req.step_index)
    ctx.store.write_scores(table, rows, reasons=reasons)
    written = session.state.setdefault("score_written", [])
    written.append((table, version, alignment, start, stop))
    points = scorecard_points(ctx, req, scores)
    if points is not None:  # a scorecard: its total points, and each released party's
        for name, values in {"": points, **_points_per_party(ctx, session, req)}.items():
            if not ctx.store.score_table_exists(f"{table}_points{name}"):
                session.state.setdefault("score_created", []).append(f"{table}_points{name}")
            ctx.store.write_scores(
                f"{table}_points{name}",
                [(i, float(p), version, stamp) for i, p in zip(ids, values, strict=True)],
            )
            written.append((f"{table}_points{name}", version, alignment, start, stop))
    return CallReply(meta={"written": len(rows)})


@method("score.abort", kinds=("score",))
def abort(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """After a cancelled scoring step: delete the rows this session wrote, and the table if the
    session created it and nothing else is in it. Releases nothing."""
    for table, version, alignment, start, stop in session.state.pop("score_written", []):
        ctx.store.delete_scores(table, version, _ids_in_range(ctx, alignment, start, stop))
    for created in session.state.pop("score_created", []):
        ctx.store.drop_score_table_if_empty(created)
    return CallReply()


_NO_EXPLAINER = "the model's kind cannot explain its scores: the score step needs reasons = 0"


def _check_explains(ctx: SiloContext, model_id: str) -> None:
    """Refuse reasons for a model kind without an explainer before any table is made."""
    kind, _ = load_part(ctx, model_id)
    if get_predictor(kind).explain is None:
        raise PolicyError(f"{_NO_EXPLAINER} ('{kind}' model)")


def _points_per_party(
    ctx: SiloContext, session: JobSession, req: CallRequest
) -> dict[str, np.ndarray]:
    """``{"_<party>": points per row}``: the label holder's own (with the base points), and those
    of each silo whose policy released them with its prediction part."""
    rows = int(req.meta["stop"]) - int(req.meta["start"])
    model_id, alignment = str(req.meta["model_id"]), str(req.meta["alignment"])
    _kind, payload = load_part(ctx, model_id)
    x = read_range(ctx, session, payload, alignment, int(req.meta["start"]), int(req.meta["stop"]))
    own = party_points(payload, x)
    out = {f"_{ctx.party}": own} if own is not None else {}
    for sender, msg in req.inbox.items():
        released = msg.arrays.get("points")
        if released is None:
            continue
        if released.dtype != np.float64 or released.shape != (rows,):
            raise ProtocolError(f"points per row from '{sender[:40]}' do not match the chunk")
        out[f"_{sender}"] = released
    return out


def scorecard_points(ctx: SiloContext, req: CallRequest, scores: np.ndarray) -> np.ndarray | None:
    """A scorecard's total points from its probabilities (``offset - factor * logit``), at the
    label holder, whose model part holds the scale; None for any other model."""
    _kind, payload = load_part(ctx, str(req.meta["model_id"]))
    card = payload.get("scorecard")
    if not isinstance(card, dict) or "base_points" not in card:  # the label holder's part
        return None
    p = np.clip(scores, 1e-300, 1.0 - 1e-16)
    return ScoreScale.from_dict(card["scale"]).points(np.log(p) - np.log1p(-p))


def _chunk_rows(session: JobSession, req: CallRequest) -> int:
    return chunk_rows(session.spec, req.step_index)


def _ids_in_range(ctx: SiloContext, alignment: str, start: int, stop: int) -> list[str]:
    return [
        i
        for chunk in ctx.store.iter_alignment_ids(alignment, positions=(start, stop))
        for i in chunk
    ]
