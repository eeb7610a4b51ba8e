"""SecureBoost end to end over real gRPC on loopback: PSI, split, training, evaluation and batch
scoring across three silos; the model parts in each silo's database; what the coordinator holds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from bundled_data import data_file, load_csv
from sqlalchemy import text
from support import Consortium, SiloSpec

from fedsilo.coordinator.orchestrator import run_job
from fedsilo.errors import JobError
from fedsilo.protocols.secureboost.active import ActiveParty, SecureBoostParams
from fedsilo.protocols.secureboost.model import SecureBoostModel, SplitTable

pytestmark = pytest.mark.e2e

GUEST = [f"x{i}" for i in range(10)]
HOST = [f"x{i}" for i in range(20)]
#: default policies (2048-bit keys, >= 10 rows per statistic). A child needs a hessian of 3, so
#: >= 12 rows (h <= 1/4): no passive silo withholds a node and the model must be exact.
PARAMS = {"n_estimators": 5, "max_depth": 3, "max_bin": 16, "min_child_weight": 3.0}


@pytest.fixture
def consortium(tmp_path: Path):
    c = Consortium(tmp_path)
    c.add_silo(SiloSpec("bank", data_file("breast_hetero_guest"), GUEST, label="y"))
    c.add_silo(SiloSpec("bureau", data_file("breast_hetero_host"), HOST[:12]))
    c.add_silo(SiloSpec("telco", data_file("breast_hetero_host"), HOST[12:]))
    c.start_all()
    yield c
    c.stop_all()


def _csv(name: str) -> dict[str, np.ndarray]:
    raw = load_csv(name)
    return {str(int(r[0])): r for r in raw}


def _aligned_ids(c: Consortium, name: str) -> list[str]:
    return [i for chunk in c.nodes["bank"].ctx.store.iter_alignment_ids(name) for i in chunk]


def test_secureboost_job_three_silos(consortium: Consortium) -> None:
    c, store = consortium, consortium.store()
    parties = {"bank": "active", "bureau": "passive", "telco": "passive"}
    spec = c.job(
        parties,
        [
            {"kind": "psi", "alignment": "breast"},
            {"kind": "split", "test_fraction": 0.2},
            {"kind": "secureboost", **PARAMS},
            {"kind": "evaluate"},
            {"kind": "score", "alignment": "breast-test", "table": "risk"},
        ],
    )
    record = run_job(spec, clients=c.clients(), store=store)
    assert record.state == "succeeded"
    assert record.result["3:secureboost"]["trees"] == 5
    assert record.result["4:evaluate"]["metrics"]["auc"] > 0.95
    part_id = f"{record.job_id}-secureboost"
    bank = c.nodes["bank"].ctx.store.load_model_part(part_id).payload
    model = SecureBoostModel.from_dict(bank["model"])
    tables = {
        p: SplitTable.from_dict(c.nodes[p].ctx.store.load_model_part(part_id).payload["part"])
        for p in ("bureau", "telco")
    }
    # every threshold lives at its owner only: the label holder's part names bins, not values
    owners = {model.features[t.feature[n]].party for t in model.trees for n in t.split_nodes()}
    assert owners == {"bank", "bureau", "telco"}
    for party, table in tables.items():
        for (t, n), (_f, threshold, _dl) in table.entries.items():
            assert model.features[model.trees[t].feature[n]].party == party
            assert repr(threshold) not in str(bank) and repr(threshold) not in str(record.result)
    (registered,) = store.list_models()
    assert registered.record["parts"] == {p: part_id for p in parties}
    assert "split" not in str(registered.record["metrics"])

    # the same model as the centralized mode on the same training rows in the same order
    guest, host = _csv("breast_hetero_guest"), _csv("breast_hetero_host")
    train_ids = _aligned_ids(c, "breast-train")
    x = np.array([np.concatenate([guest[i][2:], host[i][1:]]) for i in train_ids])
    y = np.array([guest[i][1] for i in train_ids])
    central = ActiveParty("bank", x, y, params=SecureBoostParams(**PARAMS))
    central.step()
    assert [t.to_dict() for t in central.model.trees] == [t.to_dict() for t in model.trees]

    # batch scores in the label holder's database equal the centralized model's probabilities
    with c.nodes["bank"].ctx.store.engine.connect() as conn:
        scored = dict(conn.execute(text("SELECT id, score FROM risk")).all())
    test_ids = _aligned_ids(c, "breast-test")
    assert sorted(scored) == sorted(test_ids)
    xt = np.array([np.concatenate([guest[i][2:], host[i][1:]]) for i in test_ids])
    expect = central.model.predict_proba(len(xt), central.model.own_splits.route(xt))
    np.testing.assert_allclose([scored[i] for i in test_ids], expect, atol=1e-9)

    # what passive silos sent is in their ledgers with what it reveals
    kinds = {e.kind for e in c.nodes["bureau"].ctx.ledger.entries(record.job_id)}
    assert {"sgb.layout", "sgb.histograms", "sgb.split_reply", "predict.part"} <= kinds


def test_secureboost_refuses_a_small_key_by_policy(consortium: Consortium) -> None:
    small = {**PARAMS, "key_bits": 1024, "insecure_min_key_bits": 1024}
    spec = consortium.job(
        {"bank": "active", "bureau": "passive"},
        [{"kind": "psi", "alignment": "b"}, {"kind": "secureboost", **small}],
    )
    with pytest.raises(JobError, match="at least 2048 bits"):
        run_job(spec, clients=consortium.clients(), store=consortium.store())
