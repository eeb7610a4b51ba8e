"""Evaluation: federated scores on the test rows at the label holder, or a whole model's scores
on a held-out dataset at one member (horizontal kinds); metrics and report either way.

The scores never leave the evaluating silo. It releases to the coordinator only the headline
metrics its policy allows (statistics over fewer than ``min_rows_per_statistic`` rows withheld)
and writes the full report (HTML with plots, and JSON) next to its config, in ``reports/``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedsilo.errors import PolicyError, ProtocolError
from fedsilo.jobspec import split_parts, test_alignment
from fedsilo.ml.baseline import baseline_scores
from fedsilo.ml.explain import ImportanceSum
from fedsilo.ml.metrics import evaluate
from fedsilo.ml.report import write_report
from fedsilo.ml.step_spec import EvaluateOn
from fedsilo.protocols.score.silo import check_model_kind, check_target, explain_scores
from fedsilo.silo_node.context import SiloContext
from fedsilo.silo_node.methods import CallReply, CallRequest, method
from fedsilo.silo_node.predict import PredictRequest, get_predictor, load_part
from fedsilo.silo_node.session import JobSession

#: headline metrics released to the coordinator (the rest stays in the silo's report)
RELEASED = ("rows", "positives", "auc", "ks", "withheld")


@method("evaluate.plan", kinds=("evaluate",))
def plan(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """At the label holder: how many rows the test alignment of the accepted step holds (the
    split's test part, or a stored alignment the step names; nothing is taken from the
    coordinator's meta). Releases that count only, and only when it is at least
    ``min_rows_per_statistic`` (``evaluate.finish`` releases it again among the metrics)."""
    if session.role != "active":
        raise PolicyError(f"evaluation is planned at the label holder, not role '{session.role}'")
    name = test_alignment(session.spec, req.step_index)
    if not name:
        raise PolicyError("the accepted evaluate step names no test alignment")
    info = ctx.store.alignment_info(name)
    if info.dataset != session.dataset:
        raise PolicyError(
            f"alignment '{name[:80]}' was made over dataset '{info.dataset[:60]}', "
            f"not the job's '{session.dataset[:60]}'"
        )
    ctx.config.policy.check_rows_per_statistic(info.rows)  # the same floor as the metrics
    return CallReply(meta={"rows": info.rows})


@method("evaluate.chunk", kinds=("evaluate",))
def chunk(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    scores, contribs = explain_scores(ctx, session, req)
    session.state.setdefault("eval_scores", {})[int(req.meta["start"])] = scores
    if contribs is not None:  # global importance for the report: mean |SHAP| per column
        session.state.setdefault("eval_shap", ImportanceSum()).add(contribs)
    return CallReply()


def _train_alignment(session: JobSession, req: CallRequest) -> str:
    """The training rows of the label-holder-only baseline: the step's ``train_alignment``, else
    the split's training part, else (a model of an earlier job) what the coordinator's registry
    says it was trained on. The baseline never leaves this silo but its AUC."""
    named = req.spec_step.get("train_alignment")
    if isinstance(named, str) and named:
        return named
    parts = split_parts(session.spec, req.step_index) or {}
    return str(parts.get("train") or req.meta["train_alignment"])


def _baseline(
    ctx: SiloContext,
    session: JobSession,
    req: CallRequest,
    kind: str,
    params: dict[str, Any],
    train: str,
    test: str,
) -> np.ndarray | None:
    cols = ctx.job_columns(session, req.step_index)
    X = ctx.data.load_aligned(session.dataset, train, cols)
    y = ctx.data.load_aligned_labels(session.dataset, train)
    X_test = ctx.data.load_aligned(session.dataset, test, cols)
    return baseline_scores(kind, params, X, y, X_test)


def importance_of(payload: dict[str, Any]) -> dict[str, list[tuple[str, float, int]]] | None:
    """The ``{party: [(name, gain, splits)]}`` a model part stores for the report, if any."""
    raw = payload.get("importance")
    if not isinstance(raw, dict):
        return None
    return {
        party: [(str(r[0]), float(r[1]), int(r[2])) for r in rows] for party, rows in raw.items()
    }


def report_and_release(
    ctx: SiloContext,
    *,
    stem: str,
    title: str,
    model_summary: dict[str, Any],
    y: np.ndarray,
    scores: np.ndarray,
    importance: dict[str, list[tuple[str, float, int]]] | None,
    baseline: np.ndarray | None,
    baseline_key: str = "label_holder_only_auc",
    shap: ImportanceSum | None = None,
    scorecard: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Metrics and report of ``scores`` against ``y`` at this silo; the reply meta to release.

    Shared by every evaluation (vertical at the label holder, horizontal at a member), so the
    guard (``min_rows_per_statistic``), the report and what is released are the same for all:
    the full report stays in ``reports/`` next to the silo's config; only ``RELEASED`` headline
    metrics (and the baseline's AUC under ``baseline_key``) go to the coordinator.
    """
    min_rows = ctx.config.policy.min_rows_per_statistic
    metrics = evaluate(y, scores, min_rows=min_rows)
    base_metrics = evaluate(y, baseline, min_rows=min_rows) if baseline is not None else None
    folder = ctx.config.reports
    folder.mkdir(parents=True, exist_ok=True)
    html, js = write_report(
        folder / f"{stem}.html",
        folder / f"{stem}.json",
        title=title,
        model_summary=model_summary,
        metrics=metrics,
        baseline_metrics=base_metrics,
        importance=importance,
        y=y,
        scores=scores,
        baseline_scores=baseline,
        shap_importance=shap.by_party() if shap is not None and shap.rows else None,
        scorecard=scorecard,
    )
    released = {k: metrics.get(k) for k in RELEASED}
    if base_metrics is not None:
        released[baseline_key] = base_metrics.get("auc")
    return {"metrics": released, "report": str(html), "report_json": str(js)}


# --- whole models (horizontal kinds): evaluated at one member, alone ------------------------------


def check_evaluation_allowed(
    ctx: SiloContext, target: EvaluateOn | None, columns: list[str]
) -> None:
    """Refuse at the start of training, not after it, if this silo is the job's evaluating
    member and its policy will not let the model read the held-out dataset's columns."""
    if target is not None and target.party == ctx.party:
        ctx.config.policy.check_columns(target.dataset, columns)


def _member_only(
    ctx: SiloContext,
    session: JobSession,
    kind: str,
    params: dict[str, Any],
    columns: list[str],
    x_test: np.ndarray,
) -> np.ndarray | None:
    """The same kind of model on this member's own training rows: what federating is worth."""
    x, y = ctx.data.load_dataset(session.dataset, columns, with_label=True)
    assert y is not None
    return baseline_scores(kind, params, x, y, x_test)


def evaluate_whole_model(
    ctx: SiloContext,
    session: JobSession,
    *,
    kind: str,
    target: EvaluateOn | None,
    part_id: str,
    model: str | None,
    params: dict[str, Any],
) -> dict[str, Any]:
    """Score the held-out dataset the accepted job names for this member; the meta to release.

    ``target`` comes from the member's own copy of the job spec, so the coordinator cannot
    point evaluation at another dataset. The model scores alone (a whole model needs no other
    silo); the baseline is the same kind trained on this member's rows alone.
    """
    if target is None or target.party != ctx.party:
        raise PolicyError(f"the accepted job names no {kind} evaluation at this silo")
    stored_kind, payload = load_part(ctx, part_id)
    if stored_kind != kind:
        raise ProtocolError(f"model part is a '{stored_kind}' model, not '{kind}'")
    columns = [str(c) for c in payload["columns"]]
    x_test, y_test = ctx.data.load_dataset(target.dataset, columns, with_label=True)
    assert y_test is not None
    request = PredictRequest(
        job_id=session.job_id,
        model_id=part_id,
        alignment=target.dataset,
        start=0,
        stop=len(y_test),
        party=ctx.party,
        keys=session.keys,
    )
    scores = np.asarray(get_predictor(kind).combine(payload, x_test, {}, request), dtype=np.float64)
    return report_and_release(
        ctx,
        stem=f"{session.job_id}-{kind}",
        title=f"{model or session.job_id}: evaluation at {ctx.party}",
        model_summary={
            "model": model,
            "kind": kind,
            "test dataset": target.dataset,
            "test rows": len(y_test),
            **params,
        },
        y=y_test,
        scores=scores,
        importance=importance_of(payload),
        baseline=_member_only(ctx, session, kind, params, columns, x_test),
        baseline_key="member_only_auc",
    )


@method("evaluate.finish", kinds=("evaluate",))
def finish(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """Metrics and report over the scores gathered by ``evaluate.chunk``."""
    test, model_id = str(req.meta["alignment"]), str(req.meta["model_id"])
    check_target(session, req, model_id, test)
    kind, payload = load_part(ctx, model_id)
    check_model_kind(ctx, session, req, kind)
    train = _train_alignment(session, req)
    parts = session.state.pop("eval_scores", {})
    shap = session.state.pop("eval_shap", None)
    scores = np.concatenate([parts[k] for k in sorted(parts)]) if parts else np.empty(0)
    # kept for a later step of the same job that audits them (fairness), never released
    session.state.setdefault("evaluated_scores", {})[req.step_index] = (test, scores)
    y = ctx.data.load_aligned_labels(session.dataset, test)
    params = dict(req.meta.get("params", {}))
    base = _baseline(ctx, session, req, kind, params, train, test)
    stem = f"{session.job_id}-{kind}"
    meta = report_and_release(
        ctx,
        stem=stem,
        title=f"{req.meta.get('model', stem)}: evaluation at {ctx.party}",
        model_summary={"model": req.meta.get("model"), "kind": kind, "test rows": len(y), **params},
        y=y,
        scores=scores,
        importance=importance_of(payload),
        baseline=base,
        shap=shap if isinstance(shap, ImportanceSum) else None,
        scorecard=_scorecard(payload),
    )
    return CallReply(meta=meta)


def _scorecard(payload: dict[str, Any]) -> dict[str, Any] | None:
    """A scorecard's section of the report: the label holder's own points tables and scale;
    the passive silos' characteristics are named only as held by them."""
    card = payload.get("scorecard")
    if not isinstance(card, dict):
        return None
    return {**card, "held_elsewhere": [str(p) for p in payload.get("passive_parties", [])]}
