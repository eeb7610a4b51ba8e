"""The population stability index of one characteristic (or the score), in plain numpy.

``index = Σ_bins (a − e) · ln(a / e)`` where ``e`` and ``a`` are the shares of the training
("expected") and batch ("actual") rows in each bin. Bins are cut on the training distribution:
the ``bins − 1`` interior edges are its quantiles ``k / bins`` (inverted CDF: values of training
rows), duplicates dropped, so a coarse column gets fewer bins; bin ``i`` holds the values in
``(edge[i−1], edge[i]]``; missing values get a bin of their own. An empty bin's share is taken as
:data:`EMPTY_SHARE` so that the logarithm stays finite (the usual convention).

Bands (the industry's rule of thumb): below :data:`WATCH` (0.10) stable, up to :data:`SHIFT`
(0.25) a shift to watch, above it a significant shift.

What is released follows the owner's policy (``docs/leakage.md``): the index when both
populations have at least ``min_rows`` rows; the per-bin shares only when every bin holds at
least ``min_rows`` rows of each population or none (a share is a statistic over its bin's rows);
the bin edges (training values) never.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fedsilo.errors import DataError

__all__ = [
    "EMPTY_SHARE",
    "SHIFT",
    "WATCH",
    "Stability",
    "band",
    "bin_counts",
    "stability",
    "stability_index",
    "training_edges",
]

#: share used for a bin without rows (keeps ln finite)
EMPTY_SHARE = 1e-4
#: index from which the shift is worth watching
WATCH = 0.10
#: index from which the shift is significant
SHIFT = 0.25

FloatArray = npt.NDArray[np.float64]


def training_edges(train: npt.ArrayLike, bins: int) -> FloatArray:
    """Interior bin edges: the training values at quantiles ``k / bins`` (distinct, sorted)."""
    col = np.asarray(train, dtype=np.float64)
    present = np.sort(col[~np.isnan(col)])
    if present.size == 0:
        return np.empty(0)
    ranks = [min(present.size, max(1, math.ceil(k / bins * present.size))) for k in range(1, bins)]
    edges = np.unique(present[np.asarray(ranks, dtype=np.int64) - 1])
    return np.asarray(edges[edges < present[-1]], dtype=np.float64)


def bin_counts(values: npt.ArrayLike, edges: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Rows per bin (``len(edges) + 1`` value bins, then the missing bin)."""
    col = np.asarray(values, dtype=np.float64)
    cuts = np.asarray(edges, dtype=np.float64)
    missing = np.isnan(col)
    idx = np.searchsorted(cuts, col[~missing], side="left")
    counts = np.bincount(idx, minlength=cuts.size + 1)
    return np.append(counts, int(missing.sum())).astype(np.int64)


def _shares(counts: npt.NDArray[np.int64]) -> FloatArray:
    total = int(counts.sum())
    if total == 0:
        raise DataError("a population without rows has no distribution")
    return np.asarray(counts / total, dtype=np.float64)


def stability_index(expected: npt.NDArray[np.int64], actual: npt.NDArray[np.int64]) -> float:
    """``Σ (a − e)·ln(a / e)`` over the bins (empty shares taken as :data:`EMPTY_SHARE`)."""
    e, a = _shares(expected), _shares(actual)
    used = (expected > 0) | (actual > 0)
    e = np.where(e > 0, e, EMPTY_SHARE)[used]
    a = np.where(a > 0, a, EMPTY_SHARE)[used]
    return float(np.sum((a - e) * np.log(a / e)))


def band(index: float) -> str:
    """``stable`` (< 0.10), ``watch`` (< 0.25) or ``shift``."""
    return "stable" if index < WATCH else "watch" if index < SHIFT else "shift"


@dataclass(frozen=True)
class Stability:
    """One characteristic's comparison, everything it computed (the report shows all of it at
    the owner; :meth:`released` is what leaves)."""

    edges: FloatArray
    expected: npt.NDArray[np.int64]
    actual: npt.NDArray[np.int64]
    index: float

    def released(self, min_rows: int) -> dict[str, Any]:
        """The index (and band) and, if every bin is large enough, the per-bin shares."""
        n_e, n_a = int(self.expected.sum()), int(self.actual.sum())
        out: dict[str, Any] = {"expected_rows": n_e, "actual_rows": n_a, "withheld": []}
        if min(n_e, n_a) < min_rows:
            out.update(index=None, band=None, bins=None)
            out["withheld"] = ["index", "bins"]
            return out
        out.update(index=self.index, band=band(self.index))
        counts = np.concatenate([self.expected, self.actual])
        if np.all((counts == 0) | (counts >= min_rows)):
            out["bins"] = [
                {"expected": e / n_e, "actual": a / n_a}
                for e, a in zip(self.expected.tolist(), self.actual.tolist(), strict=True)
            ]
        else:
            out["bins"] = None
            out["withheld"] = ["bins"]
        return out


def stability(train: npt.ArrayLike, batch: npt.ArrayLike, bins: int) -> Stability:
    """Bin ``train`` and ``batch`` on the training quantiles and compute the index."""
    edges = training_edges(train, bins)
    expected, actual = bin_counts(train, edges), bin_counts(batch, edges)
    return Stability(edges, expected, actual, stability_index(expected, actual))
