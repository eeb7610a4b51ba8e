"""The fairness audit in one process: parity with fairlearn's MetricFrame on the pooled credit
data (SEX and AGE bands), the attribute holder's own withholding, the packing arithmetic, and
what each message kind reveals being documented."""

from __future__ import annotations

import json
import re
from pathlib import Path

import gmpy2
import numpy as np
import pytest
from bundled_data import load_csv
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    equalized_odds_difference,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from fedsilo.errors import ConfigError, PolicyError, ProtocolError
from fedsilo.jobschema import check_step
from fedsilo.message import Message
from fedsilo.protocols.fairness.arith import multi_powmod, pack_slots, unpack_slots
from fedsilo.protocols.fairness.audit import (
    MASKED,
    AttributeHolder,
    AuditSettings,
    LabelHolder,
    score_edges,
)
from fedsilo.protocols.fairness.groups import groupings, plan_groups
from fedsilo.protocols.fairness.local import run_audit

ROOT = Path(__file__).resolve().parents[3]
AGE_EDGES = [25.0, 35.0, 45.0, 55.0]
THRESHOLDS = (0.2, 0.35, 0.5)
SMALL = {"key_bits": 1024, "insecure_min_key_bits": 1024}


def credit(rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(scores, labels, SEX, AGE) of the first ``rows`` credit rows; scores from a logistic
    regression on the bank's columns (PAY_*), fitted on other rows."""
    data = load_csv("UCI_Credit_Card")
    pay = data[:, 6:12]
    model = LogisticRegression(max_iter=500).fit(pay[rows:], data[rows:, 24])
    return model.predict_proba(pay[:rows])[:, 1], data[:rows, 24], data[:rows, 2], data[:rows, 5]


def audit_of(scores, labels, columns, *, min_rows=10, bands=None, inter=(), **kw):
    cols = list(columns)
    plan = plan_groups(columns, groupings(cols, inter), bands or {"AGE": AGE_EDGES}, min_rows)
    settings_ = AuditSettings(**{"thresholds": THRESHOLDS, **SMALL, **kw})
    holder = AttributeHolder("bureau", plan, settings_)
    label = LabelHolder("bank", scores, labels, settings_)
    return run_audit(holder, label, min_rows), plan


@pytest.fixture(scope="module")
def pooled() -> dict:
    scores, y, sex, age = credit(6000)
    out, _ = audit_of(scores, y, {"SEX": sex, "AGE": age}, inter=[("SEX", "AGE")])
    return {"scores": scores, "y": y, "sex": sex, "age": age, "out": out}


def _groups(out: dict, grouping: str) -> list[dict]:
    return [g for g in out["groups"] if g["grouping"] == grouping]


@pytest.mark.parametrize("grouping", ["SEX", "AGE", "SEX & AGE"])
def test_rates_equal_fairlearn_exactly_and_auc_within_0_002(pooled: dict, grouping: str) -> None:
    y, s = pooled["y"], pooled["scores"]
    band = np.searchsorted(AGE_EDGES, pooled["age"], side="right")
    sf = {"SEX": pooled["sex"], "AGE": band, "SEX & AGE": pooled["sex"] * 10 + band}[grouping]
    mine = _groups(pooled["out"], grouping)
    for k, t in enumerate(THRESHOLDS):
        pred = (s >= t).astype(int)
        frame = MetricFrame(
            metrics={"sel": selection_rate, "tpr": true_positive_rate, "fpr": false_positive_rate},
            y_true=y,
            y_pred=pred,
            sensitive_features=sf,
        )
        assert len(frame.by_group) == len(mine)
        for (_, ref), g in zip(frame.by_group.iterrows(), mine, strict=True):
            at = g["thresholds"][k]
            assert (at["selection_rate"], at["tpr"], at["fpr"]) == (ref.sel, ref.tpr, ref.fpr)
        gaps = pooled["out"]["gaps"][grouping]["thresholds"][k]
        kw = {"y_true": y, "y_pred": pred, "sensitive_features": sf}
        assert gaps["demographic_parity_difference"] == pytest.approx(
            demographic_parity_difference(**kw), abs=1e-12
        )
        assert gaps["demographic_parity_ratio"] == pytest.approx(
            demographic_parity_ratio(**kw), abs=1e-12
        )
        assert gaps["equalized_odds_difference"] == pytest.approx(
            equalized_odds_difference(**kw), abs=1e-12
        )
    auc = MetricFrame(metrics=roc_auc_score, y_true=y, y_pred=s, sensitive_features=sf).by_group
    for ref, g in zip(auc.to_numpy(), mine, strict=True):
        assert abs(g["auc"] - ref) < 0.002
    gap = pooled["out"]["gaps"][grouping]["auc_gap"]
    assert gap == pytest.approx(max(g["auc"] for g in mine) - min(g["auc"] for g in mine))


def test_counts_precision_and_calibration_match_the_pooled_data(pooled: dict) -> None:
    y, s, sex = pooled["y"], pooled["scores"], pooled["sex"]
    for g in _groups(pooled["out"], "SEX"):
        rows = sex == float(g["group"].split("=")[1])
        assert (g["rows"], g["positives"]) == (int(rows.sum()), int(y[rows].sum()))
        for at in g["thresholds"]:
            sel = rows & (s >= at["threshold"])
            assert at["precision"] == y[sel].sum() / sel.sum()
        cuts = np.unique(np.quantile(s, np.arange(1, 10) / 10))
        band = np.searchsorted(cuts, s, side="right")
        for k, b in enumerate(g["calibration"]):
            inside = rows & (band == k)
            assert b["rows"] == inside.sum()
            if inside.sum() < 10:  # below the minimum per statistic (or an empty band): withheld
                assert b["observed_rate"] is None and b["mean_score"] is None
                continue
            assert b["observed_rate"] == y[inside].mean()
            assert b["mean_score"] == pytest.approx(s[inside].mean(), abs=0.01)


def test_auc_is_exact_when_scores_take_few_values() -> None:
    scores, y, sex, age = credit(3000)
    coarse = np.round(scores, 2)  # ties, fewer distinct values than bins
    out, _ = audit_of(coarse, y, {"SEX": sex}, bins=128)
    for g in out["groups"]:
        rows = sex == float(g["group"].split("=")[1])
        assert g["auc"] == pytest.approx(roc_auc_score(y[rows], coarse[rows]), abs=1e-12)


def test_a_group_below_the_holders_minimum_gets_no_slot() -> None:
    scores, y, sex, age = credit(3000)
    bands = {"AGE": [25.0, 35.0, 45.0, 55.0, 65.0]}  # AGE >= 65: a handful of rows
    small = int((age >= 65).sum())
    assert 0 < small < 60
    out, plan = audit_of(scores, y, {"AGE": age}, min_rows=60, bands=bands)
    labels = [g["group"] for g in out["groups"]]
    assert "AGE >= 65" not in labels
    # alone it would follow from the total minus the others: the next smallest goes too
    assert plan.withheld == {"AGE": 2} and "AGE in [55, 65)" not in labels
    assert sum(g["rows"] for g in out["groups"]) == 3000 - small - int(
        ((age >= 55) & (age < 65)).sum()
    )
    assert (plan.row_slots[age >= 55] == -1).all()


def test_secondary_suppression_is_not_needed_when_the_withheld_rows_reach_the_minimum() -> None:
    values = np.array([1.0] * 50 + [2.0] * 6 + [3.0] * 5 + [4.0] * 40)
    plan = plan_groups({"X": values}, [("X",)], {}, 10)
    assert [s.label for s in plan.slots] == ["X=1", "X=4"]  # 6 + 5 withheld rows >= 10
    plan = plan_groups({"X": values[values != 3.0]}, [("X",)], {}, 10)
    assert [s.label for s in plan.slots] == ["X=1"]  # 6 alone is below 10: X=4 goes too


def test_intersections_name_both_columns_and_missing_values_are_their_own_group() -> None:
    a = np.array([1.0, 1.0, 2.0, np.nan] * 20)
    b = np.array([30.0, 50.0, 30.0, 50.0] * 20)
    plan = plan_groups({"A": a, "B": b}, groupings(["A"], [("A", "B")]), {"B": [40.0]}, 5)
    assert [s.label for s in plan.slots] == [
        "A=1",
        "A=2",
        "A missing",
        "A=1 & B < 40",
        "A=1 & B >= 40",
        "A=2 & B < 40",
        "A missing & B >= 40",
    ]


def test_no_releasable_group_is_refused() -> None:
    plan = plan_groups({"X": np.arange(20.0)}, [("X",)], {}, 10)
    with pytest.raises(PolicyError, match="no protected group"):
        AttributeHolder("bureau", plan, AuditSettings(**SMALL))


def test_the_attribute_holder_opens_no_more_sums_than_the_step_allows() -> None:
    scores, y, sex, _ = credit(500)
    plan = plan_groups({"SEX": sex}, [("SEX",)], {}, 10)
    audit = AuditSettings(**SMALL, bins=16)
    holder = AttributeHolder("bureau", plan, audit)
    label = LabelHolder("bank", scores, y, AuditSettings(**SMALL, bins=400))
    masked = label.masked_message(holder.groups_message())
    assert label.bins > audit.most_bins()
    with pytest.raises(ProtocolError, match="score bins"):
        holder.shares_message(masked)
    bad = Message(MASKED, meta={**masked.meta, "bins": 16}, blobs=masked.blobs)
    with pytest.raises(ProtocolError, match="do not match"):
        holder.shares_message(bad)


def test_score_edges_hold_every_threshold() -> None:
    s = np.linspace(0, 1, 1001)
    edges = score_edges(s, 8, [0.333, 0.5])
    assert {0.333, 0.5} <= set(edges.tolist()) and len(edges) <= 9


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.integers(1, 2**64), min_size=1, max_size=20),
    st.lists(st.integers(0, 2**70), min_size=20, max_size=20),
)
def test_multi_powmod_is_the_product_of_powers(bases: list[int], exps: list[int]) -> None:
    mod = gmpy2.mpz(2**127 - 1) * (2**89 - 1)
    want = 1
    for b, e in zip(bases, exps, strict=False):
        want = want * pow(b, e, int(mod)) % int(mod)
    assert multi_powmod(bases, exps[: len(bases)], mod) == want


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 60), st.data())
def test_slots_pack_and_unpack(width: int, data: st.DataObject) -> None:
    values = data.draw(st.lists(st.integers(0, 2**width - 1), min_size=1, max_size=8))
    assert unpack_slots(pack_slots(values, width), width, len(values)) == values
    with pytest.raises(ProtocolError):
        unpack_slots(pack_slots([*values, 1], width), width, len(values))


def test_schema_refuses_bad_steps() -> None:
    ok = {"kind": "fairness", "attributes": ["SEX"], "bands": {"AGE": [25, 35]}}
    assert check_step(ok)["thresholds"] == [0.5]
    for bad, match in [
        ({"attributes": []}, "at least one column"),
        ({"bands": {"AGE": [35, 25]}}, "'bands' must be"),
        ({"approval_rates": [1.5]}, "between 0 and 1"),
        ({"intersections": [["SEX"]]}, "two or more"),
        ({"thresholds": "0.5"}, "'thresholds' must be"),
    ]:
        with pytest.raises(ConfigError, match=match):
            check_step({**ok, **bad})


def test_every_fairness_message_kind_is_documented() -> None:
    page = (ROOT / "docs" / "leakage.md").read_text()
    for kind in ("fairness.groups", "fairness.masked", "fairness.shares"):
        assert re.search(rf"`{re.escape(kind)}`", page), kind
    assert "release_group_counts" in (ROOT / "docs" / "configuration.md").read_text()


def test_the_step_reads_its_scores_and_holder_from_the_job() -> None:
    from fedsilo.protocols.fairness.spec import fairness_step

    parties = {"bank": {"role": "active"}, "bureau": {"role": "passive"}}
    steps = [
        {"kind": "psi", "alignment": "c"},
        {"kind": "score", "table": "risk"},
        {"kind": "fairness", "attributes": ["SEX", "AGE"], "intersections": [["SEX", "AGE"]]},
    ]
    read = fairness_step({"name": "j", "parties": parties, "steps": steps}, 2)
    assert (read.alignment, read.attribute_party, read.table, read.model) == (
        "c",
        "bureau",
        "risk",
        None,
    )
    assert read.groupings == (("SEX",), ("AGE",), ("SEX", "AGE")) and read.columns == ["SEX", "AGE"]
    three = {**parties, "lender": {"role": "passive"}}
    with pytest.raises(ConfigError, match="'attribute_party' must name"):
        fairness_step({"name": "j", "parties": three, "steps": steps}, 2)
    assert (
        fairness_step(
            {
                "name": "j",
                "parties": parties,
                "steps": [*steps[:2], {**steps[2], "attribute_party": "bank"}],
            },
            2,
        ).attribute_party
        == "bank"
    )  # the label holder's own attributes: a local audit
    steps[2] = {**steps[2], "attribute_party": "telco"}
    with pytest.raises(ConfigError, match="not a party of the job"):
        fairness_step({"name": "j", "parties": parties, "steps": steps}, 2)
    steps[2] = {"kind": "fairness", "attributes": ["SEX"], "bands": {"AGE": [30]}}
    with pytest.raises(ConfigError, match="'bands' names 'AGE'"):
        fairness_step({"name": "j", "parties": parties, "steps": steps}, 2)


def test_everything_the_attribute_holder_decrypts_is_masked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each value A opens is a count or sum plus a uniform mask 40 bits wider: without masks
    every slot would be below ``2^value_bits``; with them that happens with probability 2^-40."""
    from fedsilo.protocols.fairness import audit as audit_module

    opened: list[int] = []
    real = audit_module.decrypt_many

    def spy(key, blobs):  # type: ignore[no-untyped-def]
        out = real(key, blobs)
        opened.extend(v for part in out for v in part)
        return out

    monkeypatch.setattr(audit_module, "decrypt_many", spy)
    scores, y, sex, age = credit(1000)
    out, plan = audit_of(scores, y, {"SEX": sex, "AGE": age})
    lay = audit_module.layout(1000, len(plan.slots), 1024)
    floor = 2 ** audit_module.value_bits(1000)
    assert lay.chunks == 1
    slots = [
        v for value in opened for v in audit_module.unpack_slots(value, lay.slot_width, lay.slots)
    ]
    assert len(slots) > 100 and min(slots) >= floor
    assert out["groups"][0]["rows"] < floor  # the true values are all below it


def _config(tmp: Path, policy: str) -> Path:
    path = tmp / "silo.toml"
    path.write_text(
        'party = "bureau"\nlisten = "127.0.0.1:1"\ndatabase = "sqlite:///x.db"\n'
        "[tls]\ninsecure_plaintext = true\n"
        '[datasets.main]\ntable = "t"\nid_column = "id"\nfeatures = ["SEX", "AGE", "LIMIT"]\n'
        f'[policy]\nprotocols = ["fairness"]\nroles = ["passive"]\n{policy}'
    )
    return path


def test_the_policy_switch_is_off_by_default_and_names_declared_features(tmp_path: Path) -> None:
    from fedsilo.silo_node.config import load_silo_config

    policy = load_silo_config(_config(tmp_path, "")).policy
    with pytest.raises(PolicyError, match="does not release group counts"):
        policy.check_group_counts("main", ["SEX"])
    on = load_silo_config(
        _config(tmp_path, 'release_group_counts = { main = ["SEX", "AGE"] }\n')
    ).policy
    on.check_group_counts("main", ["SEX", "AGE"])
    with pytest.raises(PolicyError, match="'LIMIT'"):
        on.check_group_counts("main", ["SEX", "LIMIT"])
    for bad, match in [
        ('release_group_counts = { other = ["SEX"] }\n', "unknown dataset 'other'"),
        ('release_group_counts = { main = ["INCOME"] }\n', "'INCOME', not a declared feature"),
        ('release_group_counts = ["SEX"]\n', "must be a table"),
    ]:
        with pytest.raises(ConfigError, match=match):
            load_silo_config(_config(tmp_path, bad))


def test_the_step_audits_the_rows_its_scores_came_from() -> None:
    from fedsilo.protocols.fairness.spec import fairness_step

    parties = {"bank": {"role": "active"}, "bureau": {"role": "passive"}}
    fair = {"kind": "fairness", "attributes": ["SEX"]}
    steps = [
        {"kind": "psi", "alignment": "c"},
        {"kind": "split", "test_fraction": 0.3},
        {"kind": "lr"},
        {"kind": "evaluate"},
        fair,
    ]
    read = fairness_step({"name": "j", "parties": parties, "steps": steps}, 4)
    assert (read.evaluate_index, read.alignment) == (3, "c-test")
    steps[3] = {"kind": "score", "alignment": "c-valid", "table": "t"}
    read = fairness_step({"name": "j", "parties": parties, "steps": steps}, 4)
    assert (read.evaluate_index, read.alignment, read.table) == (None, "c-valid", "t")
    steps[4] = {**fair, "model": "m-v1"}  # a named model: the psi alignment, table 't'
    read = fairness_step({"name": "j", "parties": parties, "steps": steps}, 4)
    assert (read.evaluate_index, read.alignment) == (None, "c")


def test_the_encrypted_audit_gives_the_very_counts_of_the_plain_one() -> None:
    """What the label holder unmasks equals what it would count with the attributes in hand
    (the path it takes when it holds them itself)."""
    from fedsilo.protocols.fairness.metrics import audit_metrics

    scores, y, sex, age = credit(2000)
    columns = {"SEX": sex, "AGE": age}
    out, plan = audit_of(scores, y, columns, inter=[("SEX", "AGE")])
    label = LabelHolder("bank", scores, y, AuditSettings(**{"thresholds": THRESHOLDS, **SMALL}))
    plain = audit_metrics(label.plain_counts(plan), label.thresholds, 10)
    assert plain == out
    assert json.loads(json.dumps(out)) == out  # plain JSON: what the silo releases
