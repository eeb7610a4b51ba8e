"""Explanations end to end over real gRPC: SecureBoost TreeSHAP and reason codes across three
silos (parity with xgboost's ``pred_contribs`` on the centralized model), the report's mean
|SHAP|, vertical LR contributions under the passive silos' policies (refused when off).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
from bundled_data import data_file, load_csv
from secureboost_data import xgboost_booster
from sqlalchemy import text
from support import Consortium, SiloSpec

from fedsilo.coordinator.orchestrator import run_job
from fedsilo.errors import JobError
from fedsilo.ml.explain import Contributions, reason_codes
from fedsilo.protocols.lr.vertical import VerticalModelPart
from fedsilo.protocols.secureboost.active import ActiveParty, SecureBoostParams
from fedsilo.protocols.secureboost.model import SecureBoostModel, SplitTable

pytestmark = pytest.mark.e2e

GUEST = [f"x{i}" for i in range(10)]
HOST = [f"x{i}" for i in range(20)]
PARAMS = {"n_estimators": 5, "max_depth": 3, "max_bin": 16, "min_child_weight": 3.0}
CODES = {"x0": "G00", "x1": "G01", "bureau:x3": "B03", "bureau": "B99", "*": "ZZ"}
RELEASE = "release_partial_scores = true\nrelease_feature_contributions = true\n"


def _consortium(root: Path, bureau_policy: str = "", telco_policy: str = "") -> Consortium:
    c = Consortium(root)
    c.add_silo(SiloSpec("bank", data_file("breast_hetero_guest"), GUEST, label="y"))
    c.add_silo(SiloSpec("bureau", data_file("breast_hetero_host"), HOST[:12], policy=bureau_policy))
    c.add_silo(SiloSpec("telco", data_file("breast_hetero_host"), HOST[12:], policy=telco_policy))
    c.start_all()
    return c


def _rows(c: Consortium, alignment: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Ids of an alignment at the bank, their joined features (bank, bureau, telco) and labels."""
    guest = {str(int(r[0])): r for r in load_csv("breast_hetero_guest")}
    host = {str(int(r[0])): r for r in load_csv("breast_hetero_host")}
    ids = [i for ch in c.nodes["bank"].ctx.store.iter_alignment_ids(alignment) for i in ch]
    x = np.array([np.concatenate([guest[i][2:], host[i][1:]]) for i in ids])
    return ids, x, np.array([guest[i][1] for i in ids])


def _score_rows(c: Consortium, table: str) -> dict[str, tuple]:
    with c.nodes["bank"].ctx.store.engine.connect() as conn:
        rows = conn.execute(text(f"SELECT id, score, reason_1, reason_2, reason_3 FROM {table}"))
        return {r[0]: tuple(r[1:]) for r in rows}


def test_secureboost_reasons_and_shap_three_silos(tmp_path: Path) -> None:
    c = _consortium(tmp_path, bureau_policy="release_feature_names = true\n")
    try:
        spec = c.job(
            {"bank": "active", "bureau": "passive", "telco": "passive"},
            [
                {"kind": "psi", "alignment": "breast"},
                {"kind": "split", "test_fraction": 0.2},
                {"kind": "secureboost", **PARAMS},
                {"kind": "evaluate"},
                {
                    "kind": "score",
                    "alignment": "breast-test",
                    "table": "risk",
                    "reasons": 3,
                    "reason_codes": CODES,
                },
            ],
        )
        record = run_job(spec, clients=c.clients(), store=c.store())
        assert record.state == "succeeded", record.error
        part_id = f"{record.job_id}-secureboost"
        bank = c.nodes["bank"].ctx.store.load_model_part(part_id).payload
        model = SecureBoostModel.from_dict(bank["model"])
        _, x_train, y_train = _rows(c, "breast-train")
        central = ActiveParty("bank", x_train, y_train, params=SecureBoostParams(**PARAMS))
        central.step()
        assert [t.to_dict() for t in central.model.trees] == [t.to_dict() for t in model.trees]

        # xgboost's contributions on the centralized model, for every test row
        ids, x_test, _ = _rows(c, "breast-test")
        booster = xgboost_booster(central.model)
        theirs = booster.predict(xgb.DMatrix(x_test), pred_contribs=True)

        # the federated explanation, from the stored parts and the routes each silo answers
        routes = model.own_splits.route(x_test[:, :10])
        for party, cols in {"bureau": slice(10, 22), "telco": slice(22, 30)}.items():
            payload = c.nodes[party].ctx.store.load_model_part(part_id).payload
            routes.update(SplitTable.from_dict(payload["part"]).route(x_test[:, cols]))
        ours = model.explain(len(ids), routes)
        np.testing.assert_allclose(ours.values, theirs[:, :-1], rtol=0, atol=1e-6)
        np.testing.assert_allclose(ours.margin(), theirs.sum(axis=1), rtol=0, atol=1e-5)
        assert ours.labels[10] == "bureau:x0" and ours.labels[22] == "telco feature 0"

        # the reasons the job wrote are the codes of xgboost's top adverse contributions
        expect = reason_codes(
            Contributions(ours.labels, ours.parties, theirs[:, :-1], theirs[:, -1]), 3, CODES
        )
        written = _score_rows(c, "risk")
        assert sorted(written) == sorted(ids)
        assert [list(written[i][1:]) for i in ids] == expect
        assert {code for row in expect for code in row} & {"G00", "G01", "B99", "ZZ"}

        # the evaluation report: mean |SHAP| per feature, per party, over the test rows
        reports = c.configs["bank"].parent / "reports"
        report = json.loads((reports / f"{record.job_id}-secureboost.json").read_text())
        shown = {
            r["feature"]: r["mean_abs"] for rows in report["shap_importance"].values() for r in rows
        }
        mean_abs = np.abs(theirs[:, :-1]).mean(axis=0)
        for j, label in enumerate(ours.labels):
            assert shown[label] == pytest.approx(mean_abs[j], abs=1e-6)
        html = (reports / f"{record.job_id}-secureboost.html").read_text()
        assert 'id="shap"' in html and "telco feature" in html
    finally:
        c.stop_all()


LR = {"kind": "lr", "batch_size": 128, "learning_rate": 1.0, "max_iter": 3}


def _lr_parts(c: Consortium, job_id: str) -> dict[str, VerticalModelPart]:
    return {
        p: VerticalModelPart.from_dict(
            c.nodes[p].ctx.store.load_model_part(f"{job_id}-lr").payload["part"]
        )
        for p in ("bank", "bureau", "telco")
    }


def _lr_job(c: Consortium, table: str, reasons: int, explain: str):
    """PSI, split, vertical LR and a score step of the test rows with explanations."""
    score = {"kind": "score", "alignment": "breast-test", "table": table, "reasons": reasons}
    return c.job(
        {"bank": "active", "bureau": "passive", "telco": "passive"},
        [
            {"kind": "psi", "alignment": "breast"},
            {"kind": "split", "test_fraction": 0.2},
            LR,
            {**score, "explain": explain},
        ],
    )


def test_lr_feature_contributions_released_by_policy(tmp_path: Path) -> None:
    c = _consortium(tmp_path, bureau_policy=RELEASE, telco_policy=RELEASE)
    try:
        spec = _lr_job(c, "lr_risk", 3, "feature")
        record = run_job(spec, clients=c.clients(), store=c.store())
        assert record.state == "succeeded", record.error
        parts = _lr_parts(c, record.job_id)
        ids, x, _ = _rows(c, "breast-test")
        blocks = {"bank": x[:, :10], "bureau": x[:, 10:22], "telco": x[:, 22:]}
        terms = np.hstack(
            [p.standardizer.transform(blocks[n]) * p.coef_standardised for n, p in parts.items()]
        )
        labels = (
            GUEST
            + [f"bureau feature {j}" for j in range(12)]
            + [f"telco feature {j}" for j in range(8)]
        )
        parties = ["bank"] * 10 + ["bureau"] * 12 + ["telco"] * 8
        expect = reason_codes(Contributions(labels, parties, terms, 0.0), 3)
        written = _score_rows(c, "lr_risk")
        assert [list(written[i][1:]) for i in ids] == expect
        assert any(r and "feature" in r for row in expect for r in row)
        # the margin the scores carry is the sum of the terms and the intercept
        margin = terms.sum(axis=1) + parts["bank"].intercept_standardised
        scores = np.array([written[i][0] for i in ids])
        np.testing.assert_allclose(np.log(scores / (1 - scores)), margin, atol=1e-6)
        for party in ("bureau", "telco"):
            kinds = {e.kind for e in c.nodes[party].ctx.ledger.entries(record.job_id)}
            assert "predict.explained_part" in kinds
    finally:
        c.stop_all()


def test_lr_release_refused_when_the_policy_is_off(tmp_path: Path) -> None:
    c = _consortium(tmp_path, bureau_policy=RELEASE)  # telco's policy: off (the default)
    try:
        spec = _lr_job(c, "r", 2, "party")
        published = {p: json.loads(cl.describe().policy_json) for p, cl in c.clients().items()}
        assert published["bureau"]["release_partial_scores"] is True
        assert published["telco"]["release_partial_scores"] is False
        with pytest.raises(JobError, match="release_partial_scores"):
            run_job(spec, clients=c.clients(), store=c.store())
        kinds = [e.kind for e in c.nodes["telco"].ctx.ledger.entries()]
        assert "predict.explained_part" not in kinds
        with c.nodes["bank"].ctx.store.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM r")).scalar_one() == 0
        # without asking for released values, the passive parties show as their sum
        (model,) = [m.model_id for m in c.store().list_models()]
        spec = c.job(
            {"bank": "active", "bureau": "passive", "telco": "passive"},
            [
                {
                    "kind": "score",
                    "model": model,
                    "alignment": "breast-test",
                    "table": "r2",
                    "reasons": 3,
                    "reason_codes": {"other parties": "P00"},
                }
            ],
        )
        record = run_job(spec, clients=c.clients(), store=c.store())
        assert record.state == "succeeded", record.error
        codes = {r for row in _score_rows(c, "r2").values() for r in row[1:]}
        assert codes <= set(GUEST) | {"P00", None} and "P00" in codes
    finally:
        c.stop_all()
