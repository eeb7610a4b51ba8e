"""Horizontal federated XGBoost: parity with xgboost on pooled data, exactness, export, guards."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
from bundled_data import load_csv
from sklearn.metrics import roc_auc_score

from fedsilo.crypto import ckks
from fedsilo.errors import ConfigError, CryptoError, DataError, PolicyError, ProtocolError
from fedsilo.message import Message
from fedsilo.ml import grid_sketch
from fedsilo.ml.ensemble import TreeEnsemble
from fedsilo.ml.tree import PlainSource, base_margin, grow_tree, logistic_gradients, quantize
from fedsilo.ml.xgb_export import to_xgboost_dict, to_xgboost_json
from fedsilo.protocols.hxgb.training import (
    SUM,
    Aggregator,
    HxgbParams,
    HxgbSilo,
    gradient_bits,
    train_in_process,
)

#: the issue's reference setting: xgboost hist, depth 3, 30 trees, eta 0.3, max_bin 32, lambda 1
PARAMS = HxgbParams(n_estimators=30, max_depth=3, learning_rate=0.3, max_bin=32, reg_lambda=1.0)


def _csv(name: str) -> tuple[np.ndarray, np.ndarray]:
    a = load_csv(name)
    return a[:, 2:], a[:, 1]


@pytest.fixture(scope="module")
def credit() -> dict[str, object]:
    parts = [_csv(f"default_credit_homo_{n}") for n in ("guest", "host_1", "host_2")]
    return {"parts": parts, "test": _csv("default_credit_homo_test")}


def _silos(parts, params=PARAMS, valid=None):
    return [
        HxgbSilo(
            x,
            y,
            params=params,
            party=f"silo{i}",
            n_silos=len(parts),
            x_valid=None if valid is None else valid[i][0],
            y_valid=None if valid is None else valid[i][1],
        )
        for i, (x, y) in enumerate(parts)
    ]


def _xgboost_auc(parts, test, params=PARAMS) -> float:
    x = np.vstack([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    p = dict(
        objective="binary:logistic",
        tree_method="hist",
        max_depth=params.max_depth,
        eta=params.learning_rate,
        max_bin=params.max_bin,
        reg_lambda=params.reg_lambda,
        nthread=1,
        seed=0,
    )
    bst = xgb.train(p, xgb.DMatrix(x, label=y), params.n_estimators)
    return float(roc_auc_score(test[1], bst.predict(xgb.DMatrix(test[0]))))


@pytest.fixture(scope="module")
def trained(credit):
    model, stats = train_in_process(_silos(credit["parts"]))
    return model, stats


def test_auc_within_0005_of_pooled_xgboost(credit, trained):
    model, stats = trained
    ours = roc_auc_score(credit["test"][1], model.predict_proba(credit["test"][0]))
    theirs = _xgboost_auc(credit["parts"], credit["test"])
    assert abs(ours - theirs) <= 0.005, (ours, theirs)
    assert len(model.trees) == 30 and stats.rounds == 1 + 30 * 3


def _cut_by_feature(parts, feature: int):
    """Re-split the pooled rows into three silos by terciles of one feature's value."""
    x = np.vstack([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    order = np.argsort(x[:, feature], kind="stable")
    return [(x[idx], y[idx]) for idx in np.array_split(order, 3)]


def test_non_identical_split_gives_the_same_model(credit, trained):
    """Cut by credit limit (x13 = LIMIT_BAL, z-scored): the silos' feature and label
    distributions differ, yet the pooled sums, hence the model, are the same."""
    skewed = _cut_by_feature(credit["parts"], feature=13)
    means = [p[1].mean() for p in skewed]
    assert max(means) - min(means) > 0.05  # the silos really differ
    model, _ = train_in_process(_silos(skewed))
    ours = roc_auc_score(credit["test"][1], model.predict_proba(credit["test"][0]))
    theirs = _xgboost_auc(skewed, credit["test"])
    assert abs(ours - theirs) <= 0.005, (ours, theirs)
    assert model.to_dict() == trained[0].to_dict()


def test_federated_equals_centralized_on_the_shared_cuts(credit, trained):
    """CKKS sums round back to exact integers: the model is the plaintext grower's, bit for bit."""
    model, _ = trained
    x = np.vstack([p[0] for p in credit["parts"]])
    y = np.concatenate([p[1] for p in credit["parts"]])
    bins, bits = model.bins.transform(x), gradient_bits(len(y))
    margin = np.full(len(y), base_margin(y, None))
    assert margin[0] == model.base_margin
    for tree in model.trees:
        g, h = logistic_gradients(margin, y)
        src = PlainSource(bins, model.bins.n_bins, quantize(g, bits), quantize(h, bits), bits=bits)
        central = grow_tree(src, PARAMS.tree_params())
        assert central.to_dict() == tree.to_dict()
        margin += central.leaf_values()[src.rows.positions]


def test_cuts_are_grid_values_and_follow_xgboost_for_few_distinct_values(credit, trained):
    model, _ = trained
    x = np.vstack([p[0] for p in credit["parts"]])
    grid = set(grid_sketch.grid_boundaries().tolist())
    for f, cuts in enumerate(model.bins.cuts):
        assert set(cuts[:-1].tolist()) <= grid  # never a data value
        distinct = np.unique(x[:, f].astype(np.float32))
        if len(distinct) <= PARAMS.max_bin:  # one bin per distinct value, as xgboost
            assert len(cuts) == len(distinct)
        assert len(cuts) <= PARAMS.max_bin


def test_grid_counts_add_up_over_silos(credit):
    parts = credit["parts"]
    pooled = grid_sketch.bucket_counts(np.vstack([p[0] for p in parts]))
    assert np.array_equal(sum(grid_sketch.bucket_counts(p[0]) for p in parts), pooled)
    grid = grid_sketch.grid_boundaries()
    values = np.array([[grid[10]], [np.nextafter(grid[10], -np.inf, dtype=np.float32)]])
    counts = grid_sketch.bucket_counts(values)[0]
    assert counts[11] == 1 and counts[10] == 1  # a boundary value starts the next bucket


def _check_export(model: TreeEnsemble, x: np.ndarray, tmp_path: Path) -> xgb.Booster:
    path = tmp_path / "model.json"
    path.write_text(to_xgboost_json(model))
    booster = xgb.Booster(model_file=str(path))
    theirs = booster.predict(xgb.DMatrix(x, feature_names=model.feature_names, missing=np.nan))
    assert np.max(np.abs(theirs - model.predict_proba(x))) <= 1e-5
    return booster


def test_export_loads_in_xgboost_and_predicts_the_same(credit, trained, tmp_path):
    model, _ = trained
    x = credit["test"][0].copy()
    x[::7, 3] = np.nan  # missing values follow each node's default direction
    _check_export(model, x, tmp_path)


def test_export_strips_statistics_unless_asked(trained, tmp_path):
    model, _ = trained
    stripped = to_xgboost_dict(model)["learner"]["gradient_booster"]["model"]["trees"]
    for tree in stripped:
        assert not any(tree["sum_hessian"]) and not any(tree["loss_changes"])
        inner = [i for i, c in enumerate(tree["left_children"]) if c >= 0]
        assert not any(tree["base_weights"][i] for i in inner)
    path = tmp_path / "full.json"
    path.write_text(to_xgboost_json(model, include_statistics=True))
    booster = xgb.Booster(model_file=str(path))
    assert booster.get_score(importance_type="weight") == model.get_score("weight")
    for kind in ("gain", "total_gain", "cover"):
        theirs, ours = booster.get_score(importance_type=kind), model.get_score(kind)
        assert theirs.keys() == ours.keys()
        assert all(math.isclose(theirs[k], ours[k], rel_tol=1e-5) for k in ours)
    imp = model.feature_importances()
    assert imp.shape == (23,) and math.isclose(imp.sum(), 1.0) and imp.min() >= 0


def test_model_json_round_trip_and_hostile_models_refused(trained):
    model, _ = trained
    doc = json.loads(json.dumps(model.to_dict()))
    again = TreeEnsemble.from_dict(doc)
    x = np.random.default_rng(0).normal(size=(50, 23))
    assert np.array_equal(again.decision_function(x), model.decision_function(x))
    bad_feature = json.loads(json.dumps(doc))
    bad_feature["trees"][0]["feature"][0] = 99
    bad_bin = json.loads(json.dumps(doc))
    bad_bin["trees"][0]["bin"][0] = 1000
    for bad in (bad_feature, bad_bin, {"format": "x"}, {**doc, "trees": [{"left": "a"}]}):
        with pytest.raises(DataError):
            TreeEnsemble.from_dict(bad)


# --- missing values, subsampling, early stopping (small data: fast) -------------------------------


@pytest.fixture(scope="module")
def breast() -> dict[str, object]:
    parts = [_csv(f"breast_homo_{n}") for n in ("guest", "host")]
    x = np.vstack([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return {"parts": [(x[i::3], y[i::3]) for i in range(3)], "test": _csv("breast_homo_test")}


def test_missing_values_learn_a_default_direction(breast, tmp_path):
    rng = np.random.default_rng(1)
    parts = []
    for x, y in breast["parts"]:
        x = x.copy()
        x[rng.random(x.shape) < 0.2] = np.nan
        parts.append((x, y))
    params = HxgbParams(n_estimators=5, max_depth=3, max_bin=16)
    model, _ = train_in_process(_silos(parts, params))
    assert any(any(t.default_left) for t in model.trees)
    x_test = breast["test"][0].copy()
    x_test[rng.random(x_test.shape) < 0.2] = np.nan
    _check_export(model, x_test, tmp_path)
    assert roc_auc_score(breast["test"][1], model.predict_proba(x_test)) > 0.9


def test_a_missing_sentinel_value_is_missing(breast):
    parts = [(np.where(np.isnan(x), -999.0, x), y) for x, y in breast["parts"]]
    parts[0][0][:5, 0] = -999.0
    params = HxgbParams(n_estimators=2, max_depth=2, max_bin=8, missing=-999.0)
    model, _ = train_in_process(_silos(parts, params))
    nan_parts = [(np.where(x == -999.0, np.nan, x), y) for x, y in parts]
    reference, _ = train_in_process(
        _silos(nan_parts, HxgbParams(n_estimators=2, max_depth=2, max_bin=8))
    )
    assert [t.to_dict() for t in model.trees] == [t.to_dict() for t in reference.trees]


def test_subsample_and_colsample_are_seeded(breast):
    params = HxgbParams(
        n_estimators=3, max_depth=2, max_bin=8, subsample=0.7, colsample_bytree=0.5, seed=3
    )
    a, _ = train_in_process(_silos(breast["parts"], params))
    b, _ = train_in_process(_silos(breast["parts"], params))
    c, _ = train_in_process(_silos(breast["parts"], HxgbParams(**{**params.to_dict(), "seed": 4})))
    assert a.to_dict() == b.to_dict() and a.to_dict() != c.to_dict()


def test_early_stopping_keeps_the_best_iteration(breast):
    train, valid = [], []
    for x, y in breast["parts"]:
        train.append((x[20:], y[20:]))
        valid.append((x[:20], y[:20]))
    params = HxgbParams(
        n_estimators=60, max_depth=3, max_bin=16, learning_rate=0.8, early_stopping_rounds=3
    )
    silos = _silos(train, params, valid)
    model, stats = train_in_process(silos)
    best = int(np.argmin(stats.valid_losses))
    assert model.info["best_iteration"] == best and len(model.trees) == best + 1
    assert len(stats.valid_losses) == best + 1 + 3 < 60
    assert silos[0].trees[: best + 1] == model.trees


# --- guards ---------------------------------------------------------------------------------------


def test_two_silos_are_refused(breast):
    x, y = breast["parts"][0]
    with pytest.raises(PolicyError, match="at least 3"):
        HxgbSilo(x, y, params=PARAMS, party="a", n_silos=2)
    ctx = ckks.make_context()
    with pytest.raises(PolicyError):
        Aggregator(ckks.public_context_bytes(ctx), 2)


def test_bad_parameters_and_data_refused(breast):
    with pytest.raises(ConfigError):
        HxgbParams(max_bin=1)
    with pytest.raises(ConfigError):
        HxgbParams.from_dict({"n_estimators": 3, "nonsense": 1})
    x, y = breast["parts"][0]
    with pytest.raises(DataError):
        HxgbSilo(x, y[:-1], params=PARAMS, party="a", n_silos=3)
    with pytest.raises(DataError):
        HxgbSilo(np.where(x > 1, np.inf, x), y, params=PARAMS, party="a", n_silos=3)


def _started(breast):
    silos = _silos(breast["parts"], HxgbParams(n_estimators=2, max_depth=2, max_bin=8))
    secret, public = silos[0].create_keys()
    for s in silos[1:]:
        s.accept_keys(secret)
    return silos, Aggregator(public, 3)


def test_aggregator_refuses_mixed_rounds_and_wrong_counts(breast):
    silos, agg = _started(breast)
    updates = [s.binning_update() for s in silos]
    with pytest.raises(ProtocolError):
        agg.sum(updates[:2])
    forged = Message(
        updates[2].kind, meta={**updates[2].meta, "tag": "other"}, blobs=updates[2].blobs
    )
    with pytest.raises(ProtocolError, match="different rounds"):
        agg.sum([updates[0], updates[1], forged])
    total = agg.sum(updates)
    statuses = [s.accept_binning(total) for s in silos]
    assert {st.next for st in statuses} == {"hist"}
    with pytest.raises(ProtocolError):  # a replayed sum is for another round
        silos[0].accept_histograms(total)


def test_silo_refuses_tampered_or_foreign_sums(breast):
    silos, agg = _started(breast)
    updates = [s.binning_update() for s in silos]
    total = agg.sum(updates)
    swapped = dict(total.blobs)  # the last ciphertext holds fewer values than the first
    last = f"ct{len(swapped) - 1}"
    swapped["ct0"], swapped[last] = swapped[last], swapped["ct0"]
    with pytest.raises((ProtocolError, CryptoError)):
        silos[0].accept_binning(Message(SUM, meta=total.meta, blobs=swapped))
    with pytest.raises(ProtocolError):
        silos[0].accept_binning(Message(SUM, meta={**total.meta, "silos": 2}, blobs=total.blobs))
    with pytest.raises(ProtocolError):
        silos[0].accept_binning(Message(SUM, meta=total.meta, blobs={"ct0": b"\x00" * 100}))
    stranger = HxgbSilo(*breast["parts"][0], params=PARAMS, party="x", n_silos=3)
    stranger.create_keys()  # a different secret key: the sum decrypts to noise
    stranger.binning_update()
    with pytest.raises(CryptoError):
        stranger.accept_binning(total)


def test_secret_context_never_reaches_the_aggregator():
    ctx = ckks.make_context()
    with pytest.raises(CryptoError):
        Aggregator(ckks.secret_context_bytes(ctx), 3)


def test_exported_names():
    from fedsilo.crypto import ckks as ckks_module
    from fedsilo.ml import ensemble, xgb_export
    from fedsilo.protocols.hxgb import training as hxgb

    expected = {
        hxgb: [
            "Aggregator",
            "HxgbParams",
            "HxgbSilo",
            "PUBLIC_CONTEXT",
            "RoundStatus",
            "SECRET_CONTEXT",
            "SUM",
            "TrainingStats",
            "UPDATE",
            "check_silo_count",
            "gradient_bits",
            "train_in_process",
        ],
        ensemble: ["FORMAT", "IMPORTANCE_TYPES", "TreeEnsemble"],
        xgb_export: ["XGBOOST_VERSION", "to_xgboost_dict", "to_xgboost_json"],
        grid_sketch: ["BUCKETS", "bucket_counts", "edges_from_counts", "grid_boundaries"],
        ckks_module: [
            "EXACT_LIMIT",
            "FIXED_FRAC_BITS",
            "check_silo_count",
            "decode_fixed",
            "decrypt_vector",
            "encode_fixed",
            "encrypt_vector",
            "load_context",
            "make_context",
            "public_context_bytes",
            "round_exact",
            "secret_context_bytes",
            "slot_count",
            "sum_ciphertexts",
        ],
    }
    for module, names in expected.items():
        assert sorted(module.__all__) == sorted(names), module.__name__
        assert all(hasattr(module, name) for name in names)


def test_every_hxgb_message_kind_is_documented():
    from fedsilo.leakage import kinds

    page = (Path(__file__).resolve().parents[3] / "docs" / "leakage.md").read_text()
    ours = [k.kind for k in kinds() if k.protocol == "hxgb"]
    assert len(ours) == 4
    assert [k for k in ours if f"`{k}`" not in page] == []


def test_knobs_live_in_settings_and_stay_importable():
    from fedsilo import settings
    from fedsilo.protocols.hxgb import training as hxgb

    assert grid_sketch.MIN_ABS == settings.HXGB_GRID_MIN_ABS
    assert grid_sketch.MAX_ABS == settings.HXGB_GRID_MAX_ABS
    assert grid_sketch.GRID_HALF == settings.HXGB_GRID_HALF
    assert grid_sketch.BUCKETS == 2 * settings.HXGB_GRID_HALF + 1
    assert hxgb._MAX_VECTOR_LENGTH == settings.HXGB_MAX_VECTOR_LENGTH
    assert ckks.EXACT_LIMIT == settings.CKKS_EXACT_LIMIT
    assert ckks._MAX_CIPHERTEXT_BYTES == settings.CKKS_MAX_CIPHERTEXT_BYTES
    assert gradient_bits(10) == settings.HXGB_GRADIENT_BITS_MAX
    assert gradient_bits(10**15) == settings.HXGB_GRADIENT_BITS_MIN
    # a full slot of fixed-point values still rounds back exactly
    assert 24_000 * 2 ** gradient_bits(24_000) < ckks.EXACT_LIMIT
