"""WOE / IV in process: parity with a numpy computation on the pooled data with the same bin
edges, small bins withheld or merged, monotonic merging, what each owner gets back, the selection
criteria and the scorecard's points."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from bundled_data import load_csv

from fedsilo.errors import PolicyError
from fedsilo.leakage import kinds as registered
from fedsilo.message import decode, encode
from fedsilo.ml.woe import (
    Characteristic,
    ScoreScale,
    fit_categorical,
    fit_numeric,
    monotonic_groups,
    points_table,
    woe_matrix,
)
from fedsilo.protocols.woe.local import run_woe
from fedsilo.protocols.woe.parties import COUNTS, LabelHolder, PassiveParty, WoeSettings

BITS = 1024  # the explicitly insecure test size; the bench and the e2e tests use 2048
ROWS = 4000
GUEST = [f"g{i}" for i in range(13)]
HOST = [
    "LIMIT_BAL",
    "SEX",
    "EDUCATION",
    "MARRIAGE",
    "AGE",
    "PAY_0",
    "PAY_2",
    "PAY_3",
    "PAY_4",
    "PAY_5",
]
CATEGORICAL = frozenset({"SEX", "EDUCATION", "MARRIAGE"})


def _data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    guest, host = load_csv("default_credit_hetero_guest"), load_csv("default_credit_hetero_host")
    return guest[:ROWS, 1], guest[:ROWS, 2:], host[:ROWS, 1:]


def _run(
    cfg: WoeSettings, *, min_rows: int = 50, iv: bool = True, table: bool = True
) -> tuple[LabelHolder, PassiveParty, dict]:
    y, xg, xh = _data()
    holder = LabelHolder(
        xg,
        y,
        feature_names=GUEST,
        settings_=cfg,
        passives=["bureau"],
        party="bank",
        min_rows=min_rows,
        key_bits=BITS,
        release_iv=iv,
        release_table=table,
        insecure_min_key_bits=BITS,
    )
    passive = PassiveParty(
        xh,
        feature_names=HOST,
        settings_=cfg,
        party="bureau",
        min_rows=min_rows,
        insecure_min_key_bits=BITS,
    )
    return holder, passive, run_woe(holder, [passive])


def _pooled_woe(char: Characteristic, col: np.ndarray, y: np.ndarray, smoothing: float = 0.5):
    """The reference: pooled rows, the same bins (np.digitize / value lookup), the textbook
    formulas, bin by bin."""
    if char.categorical:
        listed = list(char.edges)
        key = np.array([listed.index(v) if v in listed else len(listed) for v in col])
    else:
        key = np.digitize(col, np.asarray(char.edges), right=False)
    key = np.where(np.isnan(col), char.n_bins - 1, key)
    events = np.array([int(y[key == b].sum()) for b in range(char.n_bins)])
    rows = np.array([int((key == b).sum()) for b in range(char.n_bins)])
    ev, ne = events.astype(float), (rows - events).astype(float)
    zero = (ev == 0) | (ne == 0)
    ev[zero] += smoothing
    ne[zero] += smoothing
    pe, pn = ev / y.sum(), ne / (len(y) - y.sum())
    woe = np.log(pn / pe)
    return events, rows, woe, (pn - pe) * woe


def test_woe_and_iv_per_bin_exact_against_the_pooled_computation() -> None:
    y, _, xh = _data()
    holder, passive, out = _run(WoeSettings(max_bins=10, categorical=CATEGORICAL))
    assert out["characteristics"] == {"bank": 13, "bureau": 10}
    assert passive.woe is not None and passive.iv is not None
    for j, char in enumerate(passive.chars):
        events, rows, woe, iv = _pooled_woe(char, xh[:, j], y)
        live = np.ones(char.n_bins, bool)
        live[list(char.withheld)] = False
        table = holder.passive_tables["bureau"][j]
        assert np.array_equal(table.events[live], events[live])
        assert np.array_equal(table.rows[live], rows[live])
        np.testing.assert_allclose(passive.woe[j][live], woe[live], rtol=0, atol=1e-12)
        np.testing.assert_allclose(table.iv_bins[live], iv[live], rtol=0, atol=1e-12)
        assert passive.iv[j] == pytest.approx(float(np.sum(iv[live])), abs=1e-12)
    # categorical characteristics are binned by value
    assert [c.categorical for c in passive.chars] == [n in CATEGORICAL for n in HOST]


def test_small_bins_are_merged_or_withheld_and_never_sent() -> None:
    min_rows = 300
    holder, passive, _ = _run(WoeSettings(categorical=CATEGORICAL), min_rows=min_rows)
    y, _, xh = _data()
    withheld = 0
    for j, char in enumerate(passive.chars):
        idx = char.bin_index(xh[:, j])
        sizes = np.bincount(idx[idx >= 0], minlength=char.n_bins)
        table = holder.passive_tables["bureau"][j]
        for b in range(char.n_bins):
            if b in char.withheld:
                withheld += 1
                assert 0 < sizes[b] < min_rows
                assert table.rows[b] == 0 and table.events[b] == 0  # the holder sees nothing
                assert np.isnan(table.woe[b])
            else:
                assert sizes[b] >= min_rows and table.rows[b] == sizes[b]
    assert withheld >= 1  # EDUCATION and MARRIAGE have rare values in the credit data


def test_counts_message_leaves_withheld_slots_out() -> None:
    y, _, xh = _data()
    x = xh[:, [2]].copy()  # EDUCATION: values 0, 4, 5, 6 are rare
    passive = PassiveParty(
        x,
        feature_names=["EDUCATION"],
        settings_=WoeSettings(categorical=frozenset({"EDUCATION"})),
        party="bureau",
        min_rows=300,
        insecure_min_key_bits=BITS,
    )
    holder = LabelHolder(
        np.zeros((ROWS, 1)),
        y,
        feature_names=["z"],
        settings_=WoeSettings(),
        passives=["bureau"],
        key_bits=BITS,
        insecure_min_key_bits=BITS,
    )
    msg = decode(encode(passive.counts_message(holder.labels_message())))
    assert msg.kind == COUNTS
    (char,) = passive.chars
    assert char.other and char.withheld == (char.n_bins - 1,)
    present = msg.array("present").astype(bool)
    assert not present[char.withheld[0]]  # the small "other" bin is not even encrypted


def test_numeric_bins_merge_until_each_holds_the_minimum() -> None:
    rng = np.random.default_rng(3)
    col = np.concatenate([rng.normal(size=990), np.full(10, 50.0), [np.nan] * 5])
    char = fit_numeric("x", col, max_bins=20, min_rows=60)
    idx = char.bin_index(col)
    sizes = np.bincount(idx[idx >= 0], minlength=char.n_bins)
    assert char.missing and char.withheld == (char.n_bins - 1,)  # 5 missing < 60
    assert np.all(sizes[: char.value_bins] >= 60)


def test_a_merge_keeps_the_withheld_missing_bin() -> None:
    char = Characteristic("x", False, (1.0, 2.0, 3.0), missing=True, withheld=(4,))
    merged = char.merged([0, 0, 1, 1])
    assert merged.edges == (2.0,) and merged.n_bins == 3 and merged.withheld == (2,)
    col = np.array([0.5, 1.5, 2.5, 3.5, np.nan])
    assert merged.bin_index(col).tolist() == [0, 0, 1, 1, 2]


def test_categorical_pools_rare_values() -> None:
    col = np.array([1.0] * 100 + [2.0] * 80 + [3.0] * 5 + [4.0] * 7)
    char = fit_categorical("c", col, min_rows=13)
    assert char.edges == (1.0, 2.0) and char.other and char.withheld == (2,)  # 12 rows pooled
    assert fit_categorical("c", col, min_rows=12).withheld == ()  # the pool reaches 12
    assert char.bin_index(np.array([2.0, 9.0, np.nan])).tolist() == [1, 2, -1]


def test_monotonic_merge_gives_monotonic_event_rates() -> None:
    holder, passive, _ = _run(WoeSettings(max_bins=12, monotonic=True, categorical=CATEGORICAL))
    y, _, xh = _data()
    merged = 0
    for j, char in enumerate(passive.chars):
        if char.categorical:
            continue
        idx = char.bin_index(xh[:, j])
        k = char.value_bins
        rates = np.array([y[idx == b].mean() for b in range(k)])
        steps = np.diff(rates)
        assert np.all(steps >= 0) or np.all(steps <= 0), (char.name, rates)
        merged += 12 - k
    assert merged > 0
    assert monotonic_groups([1, 5, 3, 9], [10, 10, 10, 10]).tolist() == [0, 1, 1, 2]


def test_owner_gets_only_what_the_label_holder_releases() -> None:
    _, passive, out = _run(WoeSettings(), iv=True, table=False)
    assert passive.iv is not None and passive.woe is None
    assert out["released_to_owner"] == {"bureau": {"iv": True, "woe": False}}
    _, passive, _ = _run(WoeSettings(), iv=False, table=False)
    assert passive.iv is None and passive.woe is None


def test_monotonic_merge_of_a_passive_needs_the_table_release() -> None:
    with pytest.raises(PolicyError, match="release_woe_table"):
        _run(WoeSettings(max_bins=12, monotonic=True), table=False)


def test_points_add_up_to_the_scaled_log_odds() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 2))
    chars = [fit_numeric(f"x{j}", x[:, j], 5, 20) for j in range(2)]
    woe = [rng.normal(size=c.n_bins).tolist() for c in chars]
    wx = woe_matrix(chars, woe, x)
    mean, scale = wx.mean(axis=0), wx.std(axis=0)
    coef, intercept = np.array([0.7, -0.4]), -1.2
    z = ((wx - mean) / scale) @ coef + intercept
    s = ScoreScale(600, 50, 20)
    table = points_table(chars, woe, coef, mean, scale, s.factor)
    base = s.offset - s.factor * intercept
    total = base + sum(
        np.array([b["points"] for b in t["bins"]])[c.bin_index(x[:, j])]
        for j, (c, t) in enumerate(zip(chars, table, strict=True))
    )
    np.testing.assert_allclose(total, s.points(z), rtol=1e-12)
    # 600 points at odds 50:1, 20 more each time the odds double
    assert s.points([np.log(1 / 50)])[0] == pytest.approx(600)
    assert s.points([np.log(1 / 100)])[0] == pytest.approx(620)


def test_every_woe_message_kind_is_documented() -> None:
    page = (Path(__file__).resolve().parents[3] / "docs" / "leakage.md").read_text()
    kinds = {k.kind for k in registered() if k.protocol == "woe"}
    assert kinds == {"woe.labels", "woe.counts", "woe.result"}
    for kind in kinds:
        assert re.search(rf"`{re.escape(kind)}`", page), kind
