"""Vertical LR's first batch is not exact (issue 12 item 7): what a passive silo's first gradient
tells it, through the real party objects (small Paillier keys via the explicit insecure option).

The residual leakage, with numbers on the demo data, is in docs/leakage.md
(``bench/bench_lr_leakage.py``).
"""

from __future__ import annotations

import numpy as np
import pytest

from fedsilo import settings
from fedsilo.ml.lr_common import LRConfig, Standardizer, epoch_batches, learning_rate
from fedsilo.protocols.lr.vertical import LabelHolder, PassiveParty, initial_weights

KEY_BITS = 512
ROWS = 600
FLAGGED = 3  # rows of the passive's rare category: they "stand out" in its column


def _data(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x0 = rng.normal(size=(ROWS, 4))
    y = (x0 @ [1.0, -0.5, 0.7, 0.2] + rng.normal(size=ROWS) > 0.8).astype(float)
    flag = np.zeros(ROWS)
    flag[rng.choice(ROWS, FLAGGED, replace=False)] = 1.0
    xp = np.column_stack([rng.normal(size=(ROWS, 2)) + y[:, None] * 0.3, flag])
    return {"x0": x0, "y": y, "xp": xp}


def _first_gradient(data: dict[str, np.ndarray], zero_start: bool) -> tuple[np.ndarray, np.ndarray]:
    """The passive's exact first-batch gradient ``X_p^T rho`` (from its weight step), and rows."""
    config = LRConfig(batch_size=ROWS // 2, seed=7)
    holder = LabelHolder(
        data["x0"],
        data["y"],
        feature_names=["a", "b", "c", "d"],
        config=config,
        passive_parties=["p"],
        key_bits=KEY_BITS,
        insecure_min_key_bits=KEY_BITS,
    )
    if zero_start:  # the code before the fix
        holder._w[:] = 0.0
    passive = PassiveParty(
        data["xp"],
        party="p",
        feature_names=["e", "f", "flag"],
        config=config,
        passive_parties=["p"],
        insecure_min_key_bits=KEY_BITS,
    )
    passive.accept_public_key(holder.public_key_message())
    residuals = holder.residual_message(0, 0, {"p": passive.partial_message(0, 0)})
    opened = holder.decrypt_gradients({"p": passive.gradient_message(residuals)})
    before = passive.model_part().coef_standardised
    passive.apply_gradient(opened["p"])
    grad = (before - passive.model_part().coef_standardised) / learning_rate(config, 0)
    return grad, epoch_batches(ROWS, config.batch_size, 0, config.seed)[0]


def _label_sum_view(data: dict[str, np.ndarray], grad: np.ndarray, rows: np.ndarray):
    """The passive's reading of its gradient if residuals were ``0.5 - y``: ``X_p^T y``."""
    xs = Standardizer.fit(data["xp"]).transform(data["xp"])[rows]
    scale = 2.0**settings.LR_FEATURE_FRAC_BITS
    xs = np.round(xs * scale) / scale  # the passive's gradient uses its fixed-point features
    return xs, xs.sum(axis=0) * 0.5 - grad * rows.size


@pytest.mark.parametrize("seed", [1, 2])
def test_first_batch_gradient_is_not_the_label_sums(seed: int) -> None:
    data = _data(seed)
    for zero_start in (True, False):
        grad, rows = _first_gradient(data, zero_start)
        xs, label_sums = _label_sum_view(data, grad, rows)
        exact = xs.T @ data["y"][rows]
        error = np.abs(label_sums - exact).max()
        if zero_start:  # the attack the fix stops: exact up to fixed-point rounding
            assert error < 1e-4
        else:
            assert error > 1.0, error  # whole labels' worth of error on some feature


def test_flagged_rows_label_count_decodes_only_from_a_zero_start() -> None:
    """A rare category: from exact sums the passive counts the positives among its flagged rows.

    With ``v = sum_l x_l (0.5 - y_l)`` and the flag's two (fixed-point, standardised) values
    ``lo`` and ``hi``, ``v = hi*(F/2 - K) + lo*((B - F)/2 - Q)`` for ``K`` positives among the
    batch's ``F`` flagged rows and ``Q`` among the others: one integer ``K`` gives an integer ``Q``.
    """
    data = _data(3)
    std = Standardizer.fit(data["xp"])
    mu, scale = std.mean[-1], std.scale[-1]
    fixed = 2.0**settings.LR_FEATURE_FRAC_BITS
    outcomes = {}
    for zero_start in (True, False):
        grad, rows = _first_gradient(data, zero_start)
        flagged = int(data["xp"][rows, -1].sum())
        assert flagged >= 1
        # the flag's two fixed-point values, as the passive's gradient used them
        lo, hi = (np.round(v * fixed) / fixed for v in (-mu / scale, (1 - mu) / scale))
        sv = grad[-1] * rows.size
        fits = []
        rest = rows.size - flagged
        for k in range(flagged + 1):  # positives among the other rows, given k flagged ones
            others = rest / 2 - (sv - hi * (flagged / 2 - k)) / lo
            if 0 <= round(others) <= rest and abs(others - round(others)) < 1e-3:
                fits.append(k)
        outcomes[zero_start] = (fits, int(data["y"][rows][data["xp"][rows, -1] == 1].sum()))
    fits, truth = outcomes[True]
    assert fits == [truth]  # zero start: the count (all labels when it is 0 or F) is exact
    assert outcomes[False][0] == []  # secret start: no consistent integer count


def test_start_is_secret_reproducible_and_data_bound() -> None:
    data = _data(4)
    x = np.hstack([data["x0"], np.ones((ROWS, 1))])
    w = initial_weights(x, data["y"], 0)
    np.testing.assert_array_equal(w, initial_weights(x, data["y"], 0))  # resume, re-run
    assert not np.array_equal(w, initial_weights(x, data["y"], 1))
    flipped = data["y"].copy()
    flipped[0] = 1 - flipped[0]
    assert not np.array_equal(w, initial_weights(x, flipped, 0))
    assert np.all(w != 0) and w.shape == (5,)
    z = x @ w
    assert 0.2 < z.std() < 6  # spread, not saturated
