"""Explanations at the label holder without a server: the step's keys, the report section and
the leakage page."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedsilo.errors import ConfigError
from fedsilo.jobschema import check_step
from fedsilo.leakage import describe
from fedsilo.ml import metrics as m
from fedsilo.ml.report import write_report
from fedsilo.protocols.score.silo import EXPLAINED_PART_KIND, PART_KIND, explain_settings
from fedsilo.silo_node.methods import CallRequest

ROOT = Path(__file__).resolve().parents[3]


def test_score_step_keys_are_checked() -> None:
    values = check_step({"kind": "score", "reasons": 3, "reason_codes": {"x0": "A1"}}, 2)
    assert values["reasons"] == 3 and values["explain"] == "none" and values["adverse"] == "high"
    bad = [
        ({"reasons": 11}, "'reasons' must be an integer in \\[0, 10\\]"),
        ({"reason_codes": {"x0": 5}}, "'reason_codes' must be a table"),
        ({"reason_codes": "codes.csv"}, "'reason_codes' must be a table"),
        ({"explain": "all"}, "'explain' must be one of"),
        ({"adverse": "up"}, "'adverse' must be one of"),
        ({"explain": "party"}, "'explain' asks passive silos to release per-row values"),
    ]
    for extra, message in bad:
        with pytest.raises(ConfigError, match=f"step 3 \\(score\\): {message}"):
            check_step({"kind": "score", **extra}, 2)


def test_explain_settings_come_from_the_accepted_step_only() -> None:
    step = {"kind": "score", "reasons": 2, "explain": "feature", "reason_codes": {"a": "A"}}
    req = CallRequest(meta={"explain": "none", "reasons": 0}, spec_step=step, step_index=0)
    got = explain_settings(req)
    assert (got.reasons, got.level, dict(got.codes or {})) == (2, "feature", {"a": "A"})
    evaluate = explain_settings(CallRequest(spec_step={"kind": "evaluate"}, step_index=0))
    assert (evaluate.reasons, evaluate.level) == (0, "none")


def test_report_has_a_mean_abs_shap_section(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    y = (rng.random(400) < 0.3).astype(float)
    scores = np.clip(y * 0.4 + rng.random(400) * 0.6, 0, 1)
    shap = {"bank": [("PAY_0", 0.41), ("PAY_2", 0.1)], "bureau": [("bureau feature 3", 0.2)]}
    html, js = write_report(
        tmp_path / "r.html",
        tmp_path / "r.json",
        title="t",
        model_summary={},
        metrics=m.evaluate(y, scores),
        baseline_metrics=None,
        importance=None,
        y=y,
        scores=scores,
        shap_importance=shap,
    )
    text = html.read_text()
    assert 'id="shap"' in text and 'id="plot-shap-bureau"' in text
    assert "bureau feature 3" in text and 'id="table-shap-bank"' in text
    assert '"mean_abs": 0.41' in js.read_text()


def test_explanation_message_kinds_are_documented() -> None:
    page = (ROOT / "docs" / "leakage.md").read_text()
    for kind in (PART_KIND, EXPLAINED_PART_KIND):
        assert f"`{kind}`" in page
        assert describe(kind)
    assert "release_partial_scores" in describe(EXPLAINED_PART_KIND)
    assert "release_partial_scores" in (ROOT / "docs" / "configuration.md").read_text()


def test_reasons_for_a_model_without_explainer_are_refused_before_any_table(
    tmp_path: Path,
) -> None:
    from types import SimpleNamespace

    from sqlalchemy import create_engine, inspect

    import fedsilo.protocols.hxgb.silo  # noqa: F401  (registers the whole-model predictor)
    import fedsilo.protocols.secureboost.silo  # noqa: F401
    from fedsilo.errors import PolicyError
    from fedsilo.protocols.score.silo import plan
    from fedsilo.silo_node.store import SiloStore

    engine = create_engine(f"sqlite:///{tmp_path / 's.db'}")
    store = SiloStore(engine)
    store.create_tables()
    store.save_model_part("m-hxgb", "hxgb", {"columns": [], "model": {}})
    ctx = SimpleNamespace(store=store)
    session = SimpleNamespace(spec={"steps": [{"kind": "score", "alignment": "a"}]}, job_id="j")
    req = CallRequest(
        meta={"version": "v", "model_id": "m-hxgb"},
        spec_step={"kind": "score", "alignment": "a", "table": "t", "reasons": 2},
        step_index=0,
    )
    with pytest.raises(PolicyError, match="cannot explain its scores.*'hxgb' model"):
        plan(ctx, session, req)
    assert not inspect(engine).has_table("t")
