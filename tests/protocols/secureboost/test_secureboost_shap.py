"""Exact TreeSHAP of federated SecureBoost predictions: parity with xgboost's ``pred_contribs``.

Our contributions come from the federated model and the route bits scoring already carries;
xgboost's from the centralized model (the same trees, grown from the same bins: asserted),
exported with its covers. Equal to 1e-6 per value, summing to the margin.
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
from secureboost_data import load_vertical, xgboost_booster
from sklearn.model_selection import train_test_split

import fedsilo
from fedsilo.crypto.paillier import generate_keypair
from fedsilo.ml import treeshap
from fedsilo.ml.explain import Contributions, ImportanceSum, code_for, reason_codes, top_adverse
from fedsilo.ml.treeshap import TreeShap, leaf_paths
from fedsilo.protocols.secureboost.active import (
    ActiveParty,
    PassiveParty,
    SecureBoostParams,
    read_routes,
    routes_message,
    run_in_process,
)
from fedsilo.protocols.secureboost.model import SecureBoostModel

INSECURE = 512
TOL = 1e-6


@pytest.fixture(scope="module")
def keypair():
    return generate_keypair(INSECURE, insecure_min_bits=INSECURE)


def _params(**kw):
    base = dict(
        n_estimators=8, max_depth=4, max_bin=32, key_bits=INSECURE, insecure_min_key_bits=INSECURE
    )
    return SecureBoostParams(**{**base, **kw})


def xgboost_contribs(central: SecureBoostModel, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """xgboost's ``pred_contribs`` and margins of the centralized model (covers included)."""
    booster = xgboost_booster(central)
    dm = xgb.DMatrix(x)
    return booster.predict(dm, pred_contribs=True), booster.predict(dm, output_margin=True)


def federated(x_parts, y, params, keypair, names=None, train=None, valid=None):
    """Label holder with ``x_parts[0]``, one passive silo per further block of columns."""
    passive_names = [f"p{i}" for i in range(1, len(x_parts))]
    active = ActiveParty(
        "bank",
        x_parts[0],
        y,
        params=params,
        passives=passive_names,
        keypair=keypair,
        feature_names=names[0] if names else None,
        train_rows=train,
        valid_rows=valid,
    )
    passives = {
        n: PassiveParty(
            n,
            xp,
            insecure_min_key_bits=INSECURE,
            feature_names=names[i + 1] if names else None,
            reveal_feature_names=bool(names),
        )
        for i, (n, xp) in enumerate(zip(passive_names, x_parts[1:], strict=True))
    }
    run_in_process(active, passives)
    return active.model, passives


def centralized(x, y, params, train=None, valid=None):
    active = ActiveParty("bank", x, y, params=params, train_rows=train, valid_rows=valid)
    assert active.step() == {} and active.done
    return active.model


def federated_routes(model, passives, x_parts, rows):
    """What scoring gives the label holder: its own left masks and the passives' route bits."""
    routes = model.own_splits.route(x_parts[0][rows])
    for (name, passive), xp in zip(passives.items(), x_parts[1:], strict=True):
        msg = routes_message(passive.splits, xp[rows])
        routes.update(read_routes(msg, len(rows)))
        del name
    return routes


def check_parity(model, central, routes, x_joined, rows) -> Contributions:
    assert [t.to_dict() for t in model.trees] == [t.to_dict() for t in central.trees]
    contribs = model.explain(len(rows), routes)
    theirs, margin = xgboost_contribs(central, x_joined[rows])
    assert contribs.values.shape == (len(rows), x_joined.shape[1])
    np.testing.assert_allclose(contribs.values, theirs[:, :-1], rtol=0, atol=TOL)
    np.testing.assert_allclose(contribs.bias, theirs[:, -1], rtol=0, atol=TOL)
    ours = model.predict_margin(len(rows), routes)
    np.testing.assert_allclose(contribs.margin(), ours, rtol=0, atol=1e-9)
    np.testing.assert_allclose(ours, margin, rtol=0, atol=1e-5)  # xgboost sums in float32
    return contribs


def test_shap_equals_xgboost_on_credit_three_parties(keypair):
    d = load_vertical("default_credit", rows=4000)
    rng = np.random.default_rng(7)
    guest, host = d.guest.copy(), d.host.copy()
    guest[rng.random(guest.shape) < 0.05] = np.nan  # default directions take part
    host[rng.random(host.shape) < 0.1] = np.nan
    parts = [guest, host[:, :8], host[:, 8:]]
    params = _params(n_estimators=10, max_depth=5, subsample=0.8, min_child_weight=2, seed=3)
    model, passives = federated(parts, d.y, params, keypair, train=d.train, valid=d.test)
    joined = np.hstack(parts)
    central = centralized(joined, d.y, params, train=d.train, valid=d.test)
    routes = federated_routes(model, passives, parts, d.test)
    contribs = check_parity(model, central, routes, joined, d.test)
    owners = {model.features[t.feature[n]].party for t in model.trees for n in t.split_nodes()}
    assert owners == {"bank", "p1", "p2"}
    assert np.abs(contribs.values[:, guest.shape[1] :]).sum() > 0  # passive features count
    # a passive silo that releases no names is shown by its own feature index
    assert contribs.labels[guest.shape[1]] == "p1 feature 0"
    assert contribs.labels[-1] == f"p2 feature {host.shape[1] - 9}"
    assert contribs.parties[: guest.shape[1]] == ["bank"] * guest.shape[1]
    # one row alone is explained exactly as within the batch (what online scoring calls)
    one = {k: v[3:4] for k, v in routes.items()}
    np.testing.assert_array_equal(model.explain(1, one).values, contribs.values[3:4])
    np.testing.assert_array_equal(contribs.row(3).values, contribs.values[3:4])


def _demo(party: str) -> dict[str, list[str]]:
    path = Path(fedsilo.__file__).parent / "data" / f"demo_{party}.csv.gz"
    with gzip.open(path, "rt", newline="") as fh:
        rows = list(csv.reader(fh))
    return {"header": rows[0], **{r[0]: r[1:] for r in rows[1:]}}


def test_shap_equals_xgboost_on_the_demo_data_every_test_row(keypair):
    """The demo consortium (bank, bureau, lender) with the demo job's tree parameters."""
    bank, bureau, lender = _demo("bank"), _demo("bureau"), _demo("lender")
    ids = sorted(set(bank) & set(bureau) & set(lender) - {"header"})
    y = np.array([float(bank[i][0]) for i in ids])
    x_bank = np.array([[float(v) for v in bank[i][1:]] for i in ids])
    x_bureau = np.array([[float(v) if v else np.nan for v in bureau[i]] for i in ids])
    x_lender = np.array([[float(v) if v else np.nan for v in lender[i]] for i in ids])
    train, test = train_test_split(np.arange(len(ids)), test_size=0.2, stratify=y, random_state=42)
    # the demo job's trees (30 of depth 3, 32 bins) on a stratified fifth of the training rows:
    # every test row is explained
    train = train[:: len(train) // 4000][:4000]
    parts = [x_bank, x_bureau, x_lender]
    names = [bank["header"][2:], bureau["header"][1:], lender["header"][1:]]
    params = _params(n_estimators=30, max_depth=3, max_bin=32, learning_rate=0.3)
    model, passives = federated(parts, y, params, keypair, names=names, train=train)
    joined = np.hstack(parts)
    central = centralized(joined, y, params, train=train)
    routes = federated_routes(model, passives, parts, test)
    contribs = check_parity(model, central, routes, joined, test)
    assert len(test) == contribs.n_rows > 4900
    # released names: the passive silos' columns by name
    assert contribs.labels[:6] == names[0]
    assert contribs.labels[6] == "p1:" + names[1][0]
    assert contribs.labels[-1] == "p2:" + names[2][-1]


def test_long_paths_use_the_patterns_present(monkeypatch):
    """Paths with many distinct features: contributions computed for the rows' patterns only
    equal the full table's; xgboost agrees to 1e-5 there (it accumulates path weights of a
    dozen features in float32)."""
    d = load_vertical("default_credit", rows=3000)
    params = _params(n_estimators=2, max_depth=14, max_bin=64, min_child_weight=0.01)
    central = centralized(d.joined, d.y, params, train=d.train)
    longest = max(len(lp.features) for t in central.trees for lp in leaf_paths(t))
    assert longest > treeshap._FULL_TABLE_MAX_FEATURES
    routes = central.own_splits.route(d.joined[d.test])
    sparse = central.explain(len(d.test), routes)
    theirs, _ = xgboost_contribs(central, d.joined[d.test])
    np.testing.assert_allclose(sparse.values, theirs[:, :-1], rtol=0, atol=1e-5)
    np.testing.assert_allclose(sparse.margin(), central.predict_margin(len(d.test), routes))
    monkeypatch.setattr(treeshap, "_FULL_TABLE_MAX_FEATURES", longest)
    full = central.explain(len(d.test), routes)
    np.testing.assert_allclose(sparse.values, full.values, rtol=0, atol=1e-12)


def test_expected_value_is_the_cover_weighted_mean():
    d = load_vertical("breast")
    central = centralized(d.joined, d.y, _params(n_estimators=4))
    shap = TreeShap(central.trees, central.base_margin, d.joined.shape[1])

    def mean(tree, node):
        if tree.is_leaf(node):
            return tree.value[node]
        lo, hi = tree.left[node], tree.right[node]
        total = mean(tree, lo) * tree.cover[lo] + mean(tree, hi) * tree.cover[hi]
        return total / tree.cover[node]

    expect = central.base_margin + sum(mean(t, 0) for t in central.trees)
    assert shap.expected_value == pytest.approx(expect, abs=1e-12)


# --- reason codes ------------------------------------------------------------------------------


def _contribs(values, labels=("a", "b", "c"), parties=("bank", "bureau", "bureau")):
    return Contributions(list(labels), list(parties), np.asarray(values, dtype=float), 0.5)


def test_top_adverse_and_reason_codes():
    c = _contribs([[0.3, -0.2, 0.5], [-0.1, -0.2, -0.3], [0.2, 0.2, 0.0]])
    assert top_adverse(c, 2).tolist() == [[2, 0], [-1, -1], [0, 1]]
    assert top_adverse(c, 2, adverse="low").tolist() == [[1, -1], [2, 1], [-1, -1]]
    table = {"a": "R01", "bureau": "B99"}
    assert reason_codes(c, 2, table) == [["B99", "R01"], [None, None], ["R01", "B99"]]
    # two columns with the same code count once: the next reason moves up
    assert reason_codes(_contribs([[0.3, 0.2, 0.5]]), 2, table) == [["B99", "R01"]]
    assert reason_codes(c, 1) == [["c"], [None], ["a"]]  # no table: the label itself
    np.testing.assert_allclose(c.margin(), [1.1, -0.1, 0.9])


def test_code_for_falls_back_from_label_to_party_to_default():
    table = {"bank:PAY_0": "D01", "bureau": "B00", "*": "ZZ"}
    assert code_for("bank:PAY_0", "bank", table) == "D01"
    assert code_for("bureau feature 3", "bureau", table) == "B00"
    assert code_for("lender feature 1", "lender", table) == "ZZ"
    assert code_for("lender feature 1", "lender", None) == "lender feature 1"


def test_importance_is_mean_absolute_contribution_per_party():
    acc = ImportanceSum()
    acc.add(_contribs([[0.3, -0.2, 0.5]]))
    acc.add(_contribs([[-0.1, 0.0, -0.3], [0.1, 0.4, 0.1]]))
    assert acc.rows == 3
    by = acc.by_party()
    assert by["bank"] == [("a", pytest.approx(0.5 / 3))]
    assert [f for f, _ in by["bureau"]] == ["c", "b"]
    assert by["bureau"][0][1] == pytest.approx(0.9 / 3)
