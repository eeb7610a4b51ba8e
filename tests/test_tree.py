"""Tree growing and binning against XGBoost ``hist`` and against brute force."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xgboost as xgb
from secureboost_data import load_vertical

from fedsilo.errors import DataError
from fedsilo.ml.binning import BinMapper, fit_bins, xgboost_cuts
from fedsilo.ml.tree import (
    HistLayout,
    NodeHistogram,
    PlainSource,
    Tree,
    TreeParams,
    base_margin,
    find_best_split,
    grow_tree,
    logistic_gradients,
    precision_bits,
    quantize,
)


def _boost(x, y, x_test, *, rounds, params, max_bin, base_score=None):
    """A minimal centralized booster over the shared grower: margins on train and test."""
    bm = fit_bins(x, max_bin=max_bin)
    bins = bm.transform(x)
    m = np.full(len(y), base_margin(y, base_score))
    mt = np.full(len(x_test), base_margin(y, base_score))
    bits = precision_bits(len(y))
    trees = []
    for _ in range(rounds):
        g, h = logistic_gradients(m, y)
        src = PlainSource(bins, bm.n_bins, quantize(g, bits), quantize(h, bits), bits=bits)
        tree = grow_tree(src, params)
        trees.append(tree)
        m += tree.leaf_values()[src.rows.positions]

        def go_left(node, rows, tree=tree):
            f = tree.feature[node]
            v = x_test[rows, f].astype(np.float32)
            thr = np.float32(bm.threshold(f, tree.bin[node]))
            return np.where(np.isnan(v), tree.default_left[node], v < thr)

        mt += tree.leaf_values()[tree.leaf_index(len(x_test), go_left)]
    return trees, mt


def _xgb(x, y, x_test, *, rounds, params, max_bin):
    p = dict(
        objective="binary:logistic",
        tree_method="hist",
        max_bin=max_bin,
        max_depth=params.max_depth,
        eta=params.learning_rate,
        reg_lambda=params.reg_lambda,
        gamma=params.gamma,
        min_child_weight=params.min_child_weight,
        nthread=1,
    )
    bst = xgb.train(p, xgb.DMatrix(x, label=y, missing=np.nan), rounds)
    trees = json.loads(bst.save_raw("json"))["learner"]["gradient_booster"]["model"]["trees"]
    return trees, bst.predict(xgb.DMatrix(x_test, missing=np.nan), output_margin=True)


def _same_structure(ours: list[Tree], theirs: list[dict]) -> None:
    for a, b in zip(ours, theirs, strict=True):
        assert a.left == b["left_children"]
        inner = [n for n in range(a.n_nodes) if a.left[n] >= 0]
        assert [a.feature[n] for n in inner] == [b["split_indices"][n] for n in inner]
        assert [a.default_left[n] for n in inner] == [bool(b["default_left"][n]) for n in inner]


@pytest.mark.parametrize(
    "params",
    [
        TreeParams(max_depth=3, learning_rate=0.3),
        TreeParams(max_depth=4, learning_rate=0.1, reg_lambda=5.0, gamma=2.0, min_child_weight=3),
    ],
)
def test_matches_xgboost_on_breast(params):
    d = load_vertical("breast")
    x, y = d.joined[d.train], d.y[d.train]
    ours, mt = _boost(x, y, d.joined[d.test], rounds=10, params=params, max_bin=16)
    theirs, pt = _xgb(x, y, d.joined[d.test], rounds=10, params=params, max_bin=16)
    _same_structure(ours, theirs)
    np.testing.assert_allclose(mt, pt, atol=1e-5)


def test_matches_xgboost_with_missing_values():
    d = load_vertical("default_credit", rows=3000)
    x = d.joined.copy()
    rng = np.random.default_rng(0)
    x[rng.random(x.shape) < 0.15] = np.nan  # 15% missing: learned default directions matter
    params = TreeParams(max_depth=3, learning_rate=0.3)
    ours, mt = _boost(x[d.train], d.y[d.train], x[d.test], rounds=8, params=params, max_bin=32)
    theirs, pt = _xgb(x[d.train], d.y[d.train], x[d.test], rounds=8, params=params, max_bin=32)
    _same_structure(ours, theirs)
    assert any(t.default_left[n] for t in ours for n in t.split_nodes())
    np.testing.assert_allclose(mt, pt, atol=1e-5)


def test_party_local_cuts_equal_joined_cuts():
    d = load_vertical("default_credit", rows=5000)
    joined = xgboost_cuts(d.joined, 32)
    local = xgboost_cuts(d.guest, 32) + xgboost_cuts(d.host, 32)
    assert all(np.array_equal(a, b) for a, b in zip(joined, local, strict=True))


def test_binning_threshold_rule_and_missing_bin():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2000, 3))
    x[::7, 1] = np.nan
    for method in ("xgboost", "quantile"):
        bm = fit_bins(x, max_bin=8, method=method)
        bins = bm.transform(x)
        assert np.all(bins[::7, 1] == bm.n_bins[1])
        for f in range(3):
            ok = ~np.isnan(x[:, f])
            assert bins[ok, f].max() < bm.n_bins[f]
            for t in range(-1, int(bm.n_bins[f]) - 1):
                by_bin = bins[ok, f] <= t
                by_value = x[ok, f].astype(np.float32) < np.float32(bm.threshold(f, t))
                assert np.array_equal(by_bin, by_value)


def test_bin_mapper_json_round_trip_and_validation():
    bm = fit_bins(np.random.default_rng(2).normal(size=(500, 2)), max_bin=10)
    back = BinMapper.from_dict(json.loads(json.dumps(bm.to_dict())))
    assert all(np.array_equal(a, b) for a, b in zip(bm.cuts, back.cuts, strict=True))
    bad = bm.to_dict()
    bad["cuts"][0] = [3.0, 1.0]
    with pytest.raises(DataError):
        BinMapper.from_dict(bad)


def _brute_force(grad, hess, slots, params):
    """Every (feature, threshold, default direction) scored directly from the definition."""
    best, ptr = None, np.concatenate([[0], np.cumsum(slots)])
    gt, ht = grad[: ptr[1]].sum(), hess[: ptr[1]].sum()
    root = gt**2 / (ht + params.reg_lambda)
    for f in range(len(slots)):
        g, h = grad[ptr[f] : ptr[f + 1]], hess[ptr[f] : ptr[f + 1]]
        nb = len(g) - 1  # XGBoost's order: forward thresholds, then backward ones descending
        for t, dl in [(t, False) for t in range(nb)] + [(t, True) for t in range(nb - 2, -2, -1)]:
            gl = g[: t + 1].sum() + (g[-1] if dl else 0)
            hl = h[: t + 1].sum() + (h[-1] if dl else 0)
            gr, hr = gt - gl, ht - hl
            if min(hl, hr) < params.min_child_weight or min(hl, hr) <= 0:
                continue
            gain = gl**2 / (hl + params.reg_lambda) + gr**2 / (hr + params.reg_lambda) - root
            if best is None or gain > best[0] + 1e-9:
                best = (gain, f, t, dl)
    return best


def test_split_finder_agrees_with_brute_force():
    rng = np.random.default_rng(3)
    params = TreeParams(reg_lambda=1.0, min_child_weight=0.5)
    for _ in range(50):
        slots = rng.integers(2, 6, size=3)
        rows = 40
        g_row, h_row = rng.normal(size=rows), rng.uniform(0.05, 0.3, size=rows)
        bins = np.column_stack([rng.integers(0, s, size=rows) for s in slots])  # last = missing
        layout = HistLayout.concat(slots)
        flat = (bins + layout.ptr[:-1]).ravel()
        grad = np.bincount(flat, np.repeat(g_row, 3), minlength=layout.n_slots)
        hess = np.bincount(flat, np.repeat(h_row, 3), minlength=layout.n_slots)
        hist = NodeHistogram(grad, hess, g_row.sum(), h_row.sum())
        split = find_best_split(hist, layout, params)
        expect = _brute_force(grad, hess, slots, params)
        if expect is None or expect[0] <= 1e-6:
            assert split is None
            continue
        assert split is not None
        assert split.gain == pytest.approx(expect[0], rel=1e-9)
        assert (split.feature, split.bin, split.default_left) == expect[1:]


def test_ties_go_to_the_lowest_feature_then_forward():
    grad = np.array([-5.0, 5.0, 0.0] * 2)  # two identical features, no missing values
    hess = np.array([3.0, 3.0, 0.0] * 2)
    hist = NodeHistogram(grad, hess, 0.0, 6.0)
    split = find_best_split(hist, HistLayout((3, 3)), TreeParams())
    assert split is not None
    assert (split.feature, split.bin, split.default_left) == (0, 0, False)


def test_tree_json_round_trip_and_bad_trees_refused():
    d = load_vertical("breast")
    x, y = d.joined[d.train], d.y[d.train]
    (tree,), _ = _boost(x, y, x[:5], rounds=1, params=TreeParams(max_depth=3), max_bin=8)
    back = Tree.from_dict(json.loads(json.dumps(tree.to_dict())))
    assert back == tree
    bad = tree.to_dict()
    bad["left"][0] = 0
    with pytest.raises(ValueError):
        Tree.from_dict(bad)


def test_fit_bins_refuses_bad_input():
    with pytest.raises(DataError):
        fit_bins(np.zeros((0, 2)))
    with pytest.raises(DataError):
        fit_bins(np.zeros((5, 2)), max_bin=1)
