"""The population stability index: equal to the textbook formula on the pooled data, binned on
the training distribution's quantiles; bands; what is withheld below the owner's minimum."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from bundled_data import load_csv

from fedsilo.ml.report import write_stability_report
from fedsilo.protocols.stability.index import (
    EMPTY_SHARE,
    band,
    bin_counts,
    stability,
    training_edges,
)


def _reference(train: np.ndarray, batch: np.ndarray, bins: int) -> float:
    """The index computed independently: numpy quantiles (inverted CDF) and histogram counts."""
    present = train[~np.isnan(train)]
    qs = np.quantile(present, [k / bins for k in range(1, bins)], method="inverted_cdf")
    edges = np.unique(qs)
    edges = edges[edges < present.max()]
    bounds = np.concatenate([[-np.inf], edges, [np.inf]])

    def shares(col: np.ndarray) -> np.ndarray:
        v = col[~np.isnan(col)]
        counts = [np.sum((v > lo) & (v <= hi)) for lo, hi in zip(bounds[:-1], bounds[1:])]
        counts.append(np.isnan(col).sum())
        return np.asarray(counts, dtype=np.float64) / col.size

    e, a = shares(train), shares(batch)
    used = (e > 0) | (a > 0)
    e, a = np.where(e > 0, e, EMPTY_SHARE)[used], np.where(a > 0, a, EMPTY_SHARE)[used]
    return float(np.sum((a - e) * np.log(a / e)))


def test_the_index_equals_the_pooled_reference_on_credit_data() -> None:
    guest = load_csv("default_credit_hetero_guest")
    train, batch = guest[:20000, 2:], guest[20000:, 2:]
    for j in range(train.shape[1]):
        got = stability(train[:, j], batch[:, j], 10)
        assert got.index == _reference(train[:, j], batch[:, j], 10)
        assert got.expected.sum() == 20000 and got.actual.sum() == batch.shape[0]


def test_a_shifted_batch_is_flagged_and_the_same_distribution_is_stable() -> None:
    rng = np.random.default_rng(7)
    train = rng.normal(size=5000)
    assert band(stability(train, rng.normal(size=5000), 10).index) == "stable"
    assert band(stability(train, rng.normal(0.4, 1, size=5000), 10).index) == "watch"
    assert band(stability(train, rng.normal(1.0, 1, size=5000), 10).index) == "shift"
    assert (band(0.0999), band(0.1), band(0.2499), band(0.25)) == (
        "stable",
        "watch",
        "watch",
        "shift",
    )


def test_bins_follow_training_quantiles_with_a_missing_bin() -> None:
    train = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, np.nan], dtype=np.float64)
    edges = training_edges(train, 5)
    assert edges.tolist() == [2.0, 4.0, 6.0, 8.0]
    counts = bin_counts(np.array([0.5, 2.0, 2.5, 11.0, np.nan, np.nan]), edges)
    assert counts.tolist() == [2, 1, 0, 0, 1, 2]
    coarse = training_edges(np.array([0, 0, 0, 0, 1, 1], dtype=np.float64), 10)
    assert coarse.tolist() == [0.0]  # a binary column gets two bins


def test_what_is_released_follows_the_owners_minimum() -> None:
    rng = np.random.default_rng(3)
    s = stability(rng.normal(size=400), rng.normal(size=300), 10)
    full = s.released(min_rows=10)
    assert full["index"] == s.index and full["band"] == band(s.index)
    assert len(full["bins"]) == 11 and full["withheld"] == []
    assert abs(sum(b["expected"] for b in full["bins"]) - 1) < 1e-12
    small_bins = s.released(min_rows=35)  # some bin of 300 rows holds fewer than 35
    assert small_bins["index"] == s.index and small_bins["bins"] is None
    assert small_bins["withheld"] == ["bins"]
    none = s.released(min_rows=301)
    assert none["index"] is None and none["band"] is None and none["bins"] is None


def test_the_report_shows_every_characteristic_and_withholds_with_a_dash(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    s = stability(rng.normal(size=500), rng.normal(0.5, 1, size=400), 5)
    row = {
        "name": "AGE",
        "index": s.index,
        "band": band(s.index),
        "edges": s.edges.tolist(),
        "expected": s.expected.tolist(),
        "actual": s.actual.tolist(),
        "expected_rows": 500,
        "actual_rows": 400,
    }
    withheld = {**row, "name": "tiny", "index": None, "band": None}
    html, js = write_stability_report(
        tmp_path / "r.html",
        tmp_path / "r.json",
        title="batch 2026-06",
        summary={"training population": "t", "scoring batch": "b"},
        rows=[row, withheld],
        min_rows=10,
    )
    doc = json.loads(js.read_text())
    assert [r["name"] for r in doc["characteristics"]] == ["AGE", "tiny"]
    assert doc["characteristics"][0]["expected"] == s.expected.tolist()
    text = html.read_text()
    assert 'id="table-stability"' in text and 'id="table-stability-1"' in text
    assert f"{s.index:.4f}" in text and "missing" in text
    assert 'title="withheld by policy">—</td>' in text  # the withheld index
