"""Federated LR end to end over real gRPC on loopback: silo steps, coordinator drivers, model parts
in the silos' databases, federated evaluation; and what the coordinator gets to hold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from bundled_data import data_file, load_csv
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler
from support import Consortium, SiloSpec

from fedsilo.coordinator.orchestrator import run_job
from fedsilo.errors import JobError
from fedsilo.protocols.hlr.horizontal import HorizontalLRModel

pytestmark = pytest.mark.e2e

GUEST = [f"x{i}" for i in range(10)]
HOST = [f"x{i}" for i in range(20)]
HOMO = [f"x{i}" for i in range(23)]


@pytest.fixture
def vertical(tmp_path: Path):
    c = Consortium(tmp_path)
    c.add_silo(SiloSpec("bank", data_file("breast_hetero_guest"), GUEST, label="y"))
    c.add_silo(SiloSpec("bureau", data_file("breast_hetero_host"), HOST[:10]))
    c.add_silo(SiloSpec("telco", data_file("breast_hetero_host"), HOST[10:]))
    c.start_all()
    yield c
    c.stop_all()


def test_vertical_lr_job_three_silos(vertical: Consortium) -> None:
    store = vertical.store()
    spec = vertical.job(
        {"bank": "active", "bureau": "passive", "telco": "passive"},
        [
            {"kind": "psi", "alignment": "breast"},
            {"kind": "split", "test_fraction": 0.2},
            {"kind": "lr", "batch_size": 128, "learning_rate": 1.0, "max_iter": 4},
            {"kind": "evaluate"},
        ],
    )
    record = run_job(spec, clients=vertical.clients(), store=store)
    assert record.state == "succeeded"
    trained = record.result["3:lr"]
    assert 1 <= trained["epochs"] <= 4
    assert trained["rows"] == record.result["2:split"]["sizes"]["train"]
    assert record.result["4:evaluate"]["metrics"]["auc"] > 0.97
    # each silo stores only its own features' coefficients; the intercept is the label holder's
    part_id = f"{record.job_id}-lr"
    for party, cols in {"bank": GUEST, "bureau": HOST[:10], "telco": HOST[10:]}.items():
        part = vertical.nodes[party].ctx.store.load_model_part(part_id).payload
        assert part["columns"] == cols and part["part"]["features"] == cols
        assert (part["part"]["role"] == "label_holder") == (party == "bank")
    # the registry holds references and released metrics, never weights
    (model,) = store.list_models()
    assert "coef" not in str(model.record) and model.record["parts"]["telco"] == part_id
    # every LR message a silo sent is in its ledger with what it reveals
    kinds = {e.kind for e in vertical.nodes["bureau"].ctx.ledger.entries(record.job_id)}
    assert {"lr.partial", "lr.masked_gradient", "lr.pair_seed"} <= kinds


def test_vertical_lr_refuses_a_small_key(vertical: Consortium) -> None:
    spec = vertical.job(
        {"bank": "active", "bureau": "passive"},
        [
            {"kind": "psi", "alignment": "breast"},
            {"kind": "lr", "key_bits": 1024, "batch_size": 128},
        ],
    )
    with pytest.raises(JobError, match="at least 2048 bits"):
        run_job(spec, clients=vertical.clients(), store=vertical.store())


@pytest.fixture
def horizontal(tmp_path: Path):
    c = Consortium(tmp_path)
    for party, name in [("bank", "guest"), ("lender", "host_1"), ("card", "host_2")]:
        c.add_silo(SiloSpec(party, data_file(f"default_credit_homo_{name}"), HOMO, label="y"))
    c.start_all()
    yield c
    c.stop_all()


def test_horizontal_lr_job_three_silos(horizontal: Consortium) -> None:
    store = horizontal.store()
    members = {"bank": "member", "lender": "member", "card": "member"}
    record = run_job(
        horizontal.job(members, [{"kind": "hlr", "l2": 1 / 24000}]),
        clients=horizontal.clients(),
        store=store,
    )
    assert record.state == "succeeded" and record.result["1:hlr"]["rounds"] >= 2
    payloads = [
        n.ctx.store.load_model_part(f"{record.job_id}-hlr").payload
        for n in horizontal.nodes.values()
    ]
    assert all(p == payloads[0] for p in payloads)  # the whole model, identical at every silo
    model = HorizontalLRModel.from_dict(payloads[0]["model"])
    test = load_csv("default_credit_homo_test")
    pooled = np.vstack(
        [load_csv(f"default_credit_homo_{n}") for n in ("guest", "host_1", "host_2")]
    )
    scaler = StandardScaler().fit(pooled[:, 2:])
    ref = LogisticRegression(max_iter=2000).fit(scaler.transform(pooled[:, 2:]), pooled[:, 1])
    ref_auc = roc_auc_score(test[:, 1], ref.decision_function(scaler.transform(test[:, 2:])))
    auc = roc_auc_score(test[:, 1], model.to_sklearn().predict_proba(test[:, 2:])[:, 1])
    assert abs(auc - ref_auc) <= 0.005


def test_horizontal_lr_refuses_two_silos(horizontal: Consortium) -> None:
    spec = horizontal.job({"bank": "member", "lender": "member"}, [{"kind": "hlr"}])
    with pytest.raises(JobError, match="at least 3 silos"):
        run_job(spec, clients=horizontal.clients(), store=horizontal.store())
