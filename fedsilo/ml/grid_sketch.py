"""Federated bin edges from histograms over one fixed, data-independent grid.

Horizontal silos must agree on the same bin edges for every feature, without showing each other
their values. Quantile sketches (GK, KLL) keep actual data values in their summaries, so merging
them would reveal values. Here instead every silo counts its values in the buckets of a *fixed*
logarithmic grid that depends on no data (the same idea as DDSketch): the per-bucket counts of all
silos are added under CKKS, and every silo derives the same quantile edges from the pooled counts
(:func:`edges_from_counts`). Bucket boundaries are the only candidate edges, so an edge is never a
silo's value.

Grid: ``2 * GRID_HALF`` boundaries, ``±MIN_ABS * GAMMA**k`` for ``k = 0 .. GRID_HALF - 1``, so
``2 * GRID_HALF + 1 = 4095`` buckets per feature (one CKKS ciphertext of 4096 slots each, with a
slot to spare). Buckets are 2.3 % wide in relative terms from 1e-8 to 1e12 in magnitude: values
closer to 0 than 1e-8 share the middle bucket, values beyond 1e12 the outer ones. Boundaries are
float32 numbers and features are compared as float32, as xgboost does, so an exported model sends
every value to the same side.

What the pooled counts reveal to each silo: how many values of each feature, over all silos
together, fall in each bucket (the pooled distribution at ~2 % relative resolution) and the pooled
number of non-missing values. With its own counts subtracted a silo learns the same for the union of
the other silos, never one silo's alone when there are three or more. Missing values (NaN) are not
counted.
"""

from __future__ import annotations

import numpy as np

from fedsilo import settings

__all__ = [
    "BUCKETS",
    "bucket_counts",
    "edges_from_counts",
    "grid_boundaries",
]

#: smallest / largest magnitude the grid resolves, and positive (and negative) boundaries:
#: ``settings.HXGB_GRID_*`` (2 * 2047 + 1 = 4095 buckets fit one 4096-slot ciphertext).
MIN_ABS: float = settings.HXGB_GRID_MIN_ABS
MAX_ABS: float = settings.HXGB_GRID_MAX_ABS
GRID_HALF: int = settings.HXGB_GRID_HALF
#: buckets per feature
BUCKETS: int = 2 * GRID_HALF + 1


def grid_boundaries() -> np.ndarray:
    """The fixed, sorted float32 bucket boundaries shared by every silo (length ``BUCKETS - 1``)."""
    k = np.arange(GRID_HALF, dtype=np.float64)
    positive = MIN_ABS * (MAX_ABS / MIN_ABS) ** (k / (GRID_HALF - 1))
    grid = np.concatenate([-positive[::-1], positive]).astype(np.float32)
    if np.any(np.diff(grid) <= 0):  # float32 rounding must not merge two boundaries
        raise AssertionError("grid boundaries collapse in float32")
    return grid


_GRID = grid_boundaries()


def bucket_counts(x: np.ndarray) -> np.ndarray:
    """Counts of one silo's values per grid bucket: ``(n_features, BUCKETS)`` float64.

    Bucket ``j`` holds values ``v`` with ``grid[j-1] <= v < grid[j]``: the same ``<`` rule as
    xgboost's split conditions, so an edge taken from the grid separates exactly the buckets below.
    """
    x32 = np.asarray(x, dtype=np.float32)
    out = np.zeros((x32.shape[1], BUCKETS), dtype=np.float64)
    for f in range(x32.shape[1]):
        col = x32[:, f]
        col = col[~np.isnan(col)]
        idx = np.searchsorted(_GRID, col, side="right")
        out[f] = np.bincount(idx, minlength=BUCKETS)
    return out


def edges_from_counts(counts: np.ndarray, max_bin: int) -> list[np.ndarray]:
    """Per feature, at most ``max_bin - 1`` increasing float32 edges from pooled bucket counts.

    Like xgboost's ``hist`` cuts: a feature with at most ``max_bin`` occupied buckets (few
    distinct values) gets an edge after every occupied bucket but the last; otherwise the buckets
    are cut into equal-frequency bins, re-aiming after each bin so a heavy tie does not use up
    several bins' worth of targets (:func:`_equal_frequency`).
    """
    if max_bin < 2:
        raise ValueError("max_bin must be at least 2")
    return [_feature_edges(np.asarray(c, dtype=np.float64), max_bin) for c in counts]


def _feature_edges(counts: np.ndarray, max_bin: int) -> np.ndarray:
    occupied = np.flatnonzero(counts > 0)
    if len(occupied) <= max_bin:
        chosen = occupied[:-1]
    else:
        chosen = _equal_frequency(counts, occupied, max_bin)
    return _GRID[chosen].astype(np.float32)


def _equal_frequency(counts: np.ndarray, occupied: np.ndarray, max_bin: int) -> np.ndarray:
    """Occupied buckets after which to cut: each bin takes its share of what is left."""
    remaining, bins_left, acc = float(counts.sum()), max_bin, 0.0
    chosen: list[int] = []
    for j in occupied[:-1]:
        acc += counts[j]
        if acc >= remaining / bins_left:
            chosen.append(int(j))
            remaining, bins_left, acc = remaining - acc, bins_left - 1, 0.0
    return np.asarray(chosen, dtype=np.int64)
