"""Evaluation at the label holder: federated scores on the test rows, metrics, report.

The scores never leave the label holder. It releases to the coordinator only the headline
metrics its policy allows (statistics over fewer than ``min_rows_per_statistic`` rows withheld)
and writes the full report (HTML with plots, and JSON) next to its config, in ``reports/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fedsilo.ml.baseline import baseline_scores
from fedsilo.ml.metrics import evaluate
from fedsilo.ml.report import write_report
from fedsilo.silo_node.context import SiloContext
from fedsilo.silo_node.predict import load_part
from fedsilo.silo_node.session import JobSession
from fedsilo.silo_node.steps import StepReply, StepRequest, step
from fedsilo.silo_node.steps.score import predict_scores

#: headline metrics released to the coordinator (the rest stays in the silo's report)
RELEASED = ("rows", "positives", "auc", "ks", "withheld")


@step("evaluate.chunk")
def chunk(ctx: SiloContext, session: JobSession, req: StepRequest) -> StepReply:
    scores = predict_scores(ctx, session, req)
    session.state.setdefault("eval_scores", {})[int(req.meta["start"])] = scores
    return StepReply()


def _own_features(ctx: SiloContext, session: JobSession) -> list[str]:
    return list(ctx.config.datasets[session.dataset].features)


def _baseline(ctx: SiloContext, session: JobSession, kind: str, params: dict[str, Any],
              train: str, test: str) -> np.ndarray | None:
    cols = _own_features(ctx, session)
    X = ctx.data.load_aligned(session.dataset, train, cols)
    y = ctx.data.load_aligned_labels(session.dataset, train)
    X_test = ctx.data.load_aligned(session.dataset, test, cols)
    return baseline_scores(kind, params, X, y, X_test)


def importance_of(payload: dict[str, Any]) -> dict[str, list[tuple[str, float, int]]] | None:
    """The ``{party: [(name, gain, splits)]}`` a model part stores for the report, if any."""
    raw = payload.get("importance")
    if not isinstance(raw, dict):
        return None
    return {party: [(str(r[0]), float(r[1]), int(r[2])) for r in rows]
            for party, rows in raw.items()}


def report_and_release(ctx: SiloContext, *, stem: str, title: str,
                       model_summary: dict[str, Any], y: np.ndarray, scores: np.ndarray,
                       importance: dict[str, list[tuple[str, float, int]]] | None,
                       baseline: np.ndarray | None,
                       baseline_key: str = "label_holder_only_auc") -> dict[str, Any]:
    """Metrics and report of ``scores`` against ``y`` at this silo; the reply meta to release.

    Shared by every evaluation (vertical at the label holder, horizontal at a member), so the
    guard (``min_rows_per_statistic``), the report and what is released are the same for all:
    the full report stays in ``reports/`` next to the silo's config; only ``RELEASED`` headline
    metrics (and the baseline's AUC under ``baseline_key``) go to the coordinator.
    """
    min_rows = ctx.config.policy.min_rows_per_statistic
    metrics = evaluate(y, scores, min_rows=min_rows)
    base_metrics = evaluate(y, baseline, min_rows=min_rows) if baseline is not None else None
    folder = Path(ctx.config.path).parent / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    html, js = write_report(folder / f"{stem}.html", folder / f"{stem}.json", title=title,
                            model_summary=model_summary, metrics=metrics,
                            baseline_metrics=base_metrics, importance=importance, y=y,
                            scores=scores, baseline_scores=baseline)
    released = {k: metrics.get(k) for k in RELEASED}
    if base_metrics is not None:
        released[baseline_key] = base_metrics.get("auc")
    return {"metrics": released, "report": str(html), "report_json": str(js)}


@step("evaluate.finish")
def finish(ctx: SiloContext, session: JobSession, req: StepRequest) -> StepReply:
    """Metrics and report over the scores gathered by ``evaluate.chunk``."""
    test, train = str(req.meta["alignment"]), str(req.meta["train_alignment"])
    kind, payload = load_part(ctx, str(req.meta["model_id"]))
    parts = session.state.pop("eval_scores", {})
    scores = np.concatenate([parts[k] for k in sorted(parts)]) if parts else np.empty(0)
    y = ctx.data.load_aligned_labels(session.dataset, test)
    params = dict(req.meta.get("params", {}))
    base = _baseline(ctx, session, kind, params, train, test)
    stem = f"{session.job_id}-{kind}"
    meta = report_and_release(
        ctx, stem=stem, title=f"{req.meta.get('model', stem)}: evaluation at {ctx.party}",
        model_summary={"model": req.meta.get("model"), "kind": kind, "test rows": len(y),
                       **params},
        y=y, scores=scores, importance=importance_of(payload), baseline=base)
    return StepReply(meta=meta)
