"""The fairness audit over real gRPC under mTLS, 2048-bit keys: SEX and AGE bands of the credit
data held at the bureau, scores and labels at the bank. Parity with fairlearn's MetricFrame on the
pooled rows; a group below the bureau's minimum is withheld; the bureau's policy switch; what the
bureau's ledger says it revealed; the metrics in the model registry."""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fairlearn.metrics import (
    MetricFrame,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from support import Consortium, SiloSpec

from fedsilo.coordinator.orchestrator import run_job
from fedsilo.errors import JobError, PolicyError
from fedsilo.leakage import describe
from fedsilo.silo_node.demo_data import DEMO_DATA_DIR, DEMO_PARTIES

pytestmark = pytest.mark.e2e

ROWS = 4000
PARTIES = {"bank": "active", "bureau": "passive"}
AGE_EDGES = [25, 35, 45, 55]
THRESHOLDS = [0.2, 0.4]
GROUP_POLICY = 'release_group_counts = { main = ["SEX", "AGE"] }\n'


def _read(party: str) -> tuple[list[str], list[list[str]]]:
    with gzip.open(DEMO_DATA_DIR / f"demo_{party}.csv.gz", "rt", newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def _write(path: Path, head: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows([head, *rows])
    return path


@pytest.fixture(scope="module")
def credit(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The first ROWS bank customers and the bureau's files of them (plus 500 others), and a
    model's scores: a logistic regression on the bank's PAY_* columns fitted on other customers."""
    root = tmp_path_factory.mktemp("credit")
    bank_head, bank = _read("bank")
    bureau_head, bureau = _read("bureau")
    ids = {r[0] for r in bank[:ROWS]}
    others = [r for r in bureau if r[0] not in ids][:500]
    x = np.array([[float(v) for v in r[2:]] for r in bank], dtype=np.float64)
    y = np.array([float(r[1]) for r in bank])
    model = LogisticRegression(max_iter=500).fit(x[ROWS:], y[ROWS:])
    scores = model.predict_proba(x[:ROWS])[:, 1]
    attrs = {r[0]: (float(r[2]), float(r[5])) for r in bureau if r[0] in ids}
    return {
        "bank": _write(root / "bank.csv", bank_head, bank[:ROWS]),
        "bureau": _write(
            root / "bureau.csv", bureau_head, [r for r in bureau if r[0] in ids] + others
        ),
        "scores": dict(zip([r[0] for r in bank[:ROWS]], scores.tolist(), strict=True)),
        "labels": dict(zip([r[0] for r in bank[:ROWS]], y[:ROWS].tolist(), strict=True)),
        "attrs": attrs,
    }


def _consortium(root: Path, credit: dict, bureau_policy: str) -> Consortium:
    c = Consortium(root, tls=True)
    _, label, bank_features = DEMO_PARTIES["bank"]
    c.add_silo(
        SiloSpec("bank", credit["bank"], list(bank_features), label=label, id_column="customer_id")
    )
    c.add_silo(
        SiloSpec(
            "bureau",
            credit["bureau"],
            list(DEMO_PARTIES["bureau"][2]),
            id_column="customer_id",
            policy=bureau_policy,
        )
    )
    c.start_all()
    return c


@pytest.fixture
def pair(tmp_path: Path, credit: dict) -> Iterator[Consortium]:
    c = _consortium(tmp_path, credit, GROUP_POLICY)
    yield c
    c.stop_all()


def _scored(c: Consortium, credit: dict) -> str:
    """PSI, then the model's scores written into the bank's table 'risk' under a registry id."""
    store = c.store()
    run_job(
        c.job(PARTIES, [{"kind": "psi", "alignment": "credit"}]), clients=c.clients(), store=store
    )
    model = store.register_model(name="risk", kind="lr", job_id="outside", record={"parts": {}})
    rows = [(i, s, model.model_id, "2026-01-01T00:00:00") for i, s in credit["scores"].items()]
    c.nodes["bank"].ctx.store.write_scores("risk", rows)
    return model.model_id


def _step(model: str, **extra: object) -> dict:
    return {
        "kind": "fairness",
        "alignment": "credit",
        "model": model,
        "table": "risk",
        "attributes": ["SEX", "AGE"],
        "bands": {"AGE": AGE_EDGES},
        "thresholds": THRESHOLDS,
        **extra,
    }


def test_fairness_metrics_equal_fairlearn_on_the_pooled_rows(
    pair: Consortium, credit: dict
) -> None:
    model = _scored(pair, credit)
    store = pair.store()
    record = run_job(pair.job(PARTIES, [_step(model)]), clients=pair.clients(), store=store)
    out = record.result["1:fairness"]
    ids = sorted(credit["attrs"])
    s = np.array([credit["scores"][i] for i in ids])
    y = np.array([credit["labels"][i] for i in ids])
    sex = np.array([credit["attrs"][i][0] for i in ids])
    age = np.searchsorted(AGE_EDGES, [credit["attrs"][i][1] for i in ids], side="right")
    groups = out["metrics"]["groups"]
    for name, sf in (("SEX", sex), ("AGE", age)):
        mine = [g for g in groups if g["grouping"] == name]
        for k, t in enumerate(THRESHOLDS):
            frame = MetricFrame(
                metrics={
                    "sel": selection_rate,
                    "tpr": true_positive_rate,
                    "fpr": false_positive_rate,
                },
                y_true=y,
                y_pred=(s >= t).astype(int),
                sensitive_features=sf,
            )
            present = [k2 for k2, _ in frame.by_group.iterrows()]
            assert len(present) == len(mine) + out["withheld"][name]
            for g in mine:
                ref = frame.by_group.iloc[[str(v) for v in present].index(_code(name, g["group"]))]
                at = g["thresholds"][k]
                assert (at["selection_rate"], at["tpr"], at["fpr"]) == (ref.sel, ref.tpr, ref.fpr)
        for g in mine:
            rows = (sf if name == "AGE" else sex).astype(str) == _code(name, g["group"])
            assert abs(g["auc"] - roc_auc_score(y[rows], s[rows])) < 0.002
    # the registry keeps the released metrics beside the model
    assert store.get_model(model).record["fairness"] == out["metrics"]
    # the bank's report has its own fairness section, with plots
    page = Path(out["report"]).read_text()
    assert 'id="fairness"' in page and 'id="plot-fairness-sex"' in page
    assert json.loads(Path(out["report"]).with_suffix(".json").read_text())["fairness"]["groups"]


def _code(name: str, label: str) -> str:
    """The sensitive-feature value of a released group label (``SEX=2``, ``AGE in [25, 35)``)."""
    if name == "SEX":
        return str(float(label.split("=")[1]))
    if label.startswith("AGE <"):
        return "0"
    if label.startswith("AGE >="):
        return str(len(AGE_EDGES))
    low = float(label.split("[")[1].split(",")[0])
    return str(AGE_EDGES.index(int(low)) + 1)


def test_a_group_below_the_bureaus_minimum_is_withheld_and_its_ledger_says_what_it_revealed(
    tmp_path: Path, credit: dict
) -> None:
    c = _consortium(tmp_path, credit, GROUP_POLICY + "min_rows_per_statistic = 150\n")
    try:
        model = _scored(c, credit)
        step = _step(model, bands={"AGE": [25, 35, 45, 55, 60]}, thresholds=[0.3])
        record = run_job(c.job(PARTIES, [step]), clients=c.clients(), store=c.store())
        entries = c.nodes["bureau"].ctx.ledger.entries(record.job_id)
    finally:
        c.stop_all()
    out = record.result["1:fairness"]
    ages = np.array([a for _, a in credit["attrs"].values()])
    assert 0 < (ages >= 60).sum() < 150  # the bureau's minimum: that band is withheld
    labels = [g["group"] for g in out["metrics"]["groups"]]
    assert "AGE >= 60" not in labels and out["withheld"]["AGE"] >= 1
    assert sum(g["rows"] for g in out["metrics"]["groups"] if g["grouping"] == "AGE") < len(ages)
    # the bureau's ledger: exactly the released groups to the coordinator, two sealed messages
    sent = [(e.kind, e.peer) for e in entries if e.kind.startswith("fairness.")]
    assert sent == [("fairness.groups", "bank"), ("fairness.shares", "bank")]
    for e in entries:
        if e.kind.startswith("fairness."):
            assert e.reveals == describe(e.kind)
    (released,) = [e for e in entries if e.kind == "job.released" and e.step == "fairness.groups"]
    said = json.loads(released.reveals[released.reveals.index("{") :])
    groups = [[g["grouping"], g["group"], g["rows"]] for g in out["metrics"]["groups"]]
    assert said == {"groups": groups, "withheld": out["withheld"]}
    assert not [e for e in entries if e.kind == "job.released" and e.step != "fairness.groups"]


def test_the_bureau_refuses_unless_its_policy_releases_the_columns(
    tmp_path: Path, credit: dict
) -> None:
    c = _consortium(tmp_path, credit, 'release_group_counts = { main = ["SEX"] }\n')
    try:
        model = _scored(c, credit)
        with pytest.raises(JobError, match="does not release group counts of column.*'AGE'") as err:
            run_job(c.job(PARTIES, [_step(model)]), clients=c.clients(), store=c.store())
        assert isinstance(err.value.__cause__, PolicyError)
        kinds = {e.kind for e in c.nodes["bureau"].ctx.ledger.entries()}
        assert not any(k.startswith("fairness.") for k in kinds)
    finally:
        c.stop_all()


def test_the_scores_of_an_evaluate_step_in_the_same_job(pair: Consortium) -> None:
    """psi, split, lr, evaluate, fairness: the audit takes the test rows' scores the evaluate
    step kept at the bank (never released) and the model the job trained."""
    store = pair.store()
    steps = [
        {"kind": "psi", "alignment": "credit"},
        {"kind": "split", "test_fraction": 0.5},
        {"kind": "lr", "max_iter": 2, "batch_size": 1000},
        {"kind": "evaluate"},
        {"kind": "fairness", "attributes": ["SEX"], "thresholds": [0.2]},
    ]
    record = run_job(pair.job(PARTIES, steps), clients=pair.clients(), store=store)
    evaluated, out = record.result["4:evaluate"], record.result["5:fairness"]
    assert out["model"] == evaluated["model"]
    groups = out["metrics"]["groups"]
    assert sum(g["rows"] for g in groups) == record.result["2:split"]["sizes"]["test"]
    assert sum(g["positives"] for g in groups) == evaluated["metrics"]["positives"]
    assert all(0.5 < g["auc"] < 1 for g in groups)
    assert store.get_model(evaluated["model"]).record["fairness"] == out["metrics"]


def test_a_label_holder_holding_the_attribute_audits_alone(tmp_path: Path, credit: dict) -> None:
    """The attribute at the bank (here PAY_0, as a stand-in): one call at the bank, no message
    to any silo, under the bank's own policy switch and minimum."""
    c = Consortium(tmp_path, tls=True)
    _, label, bank_features = DEMO_PARTIES["bank"]
    c.add_silo(
        SiloSpec(
            "bank",
            credit["bank"],
            list(bank_features),
            label=label,
            id_column="customer_id",
            policy='release_group_counts = { main = ["PAY_0"] }\n',
        )
    )
    c.add_silo(
        SiloSpec(
            "bureau", credit["bureau"], list(DEMO_PARTIES["bureau"][2]), id_column="customer_id"
        )
    )
    c.start_all()
    try:
        model = _scored(c, credit)
        step = {**_step(model), "attributes": ["PAY_0"], "attribute_party": "bank", "bands": {}}
        record = run_job(c.job(PARTIES, [step]), clients=c.clients(), store=c.store())
        bureau = c.nodes["bureau"].ctx.ledger.entries(record.job_id)
    finally:
        c.stop_all()
    out = record.result["1:fairness"]
    pay0 = {r: v for r, v in zip(*_pay0(credit), strict=True)}
    groups = out["metrics"]["groups"]
    assert groups and all(g["grouping"] == "PAY_0" for g in groups)
    for g in groups:
        value = float(g["group"].split("=")[1])
        assert g["rows"] == sum(1 for v in pay0.values() if v == value)
    assert not [e for e in bureau if e.kind.startswith("fairness.")]


def _pay0(credit: dict) -> tuple[list[str], list[float]]:
    with open(credit["bank"], newline="") as fh:
        rows = list(csv.reader(fh))[1:]
    ids = set(credit["attrs"])
    kept = [r for r in rows if r[0] in ids]
    return [r[0] for r in kept], [float(r[2]) for r in kept]
