"""Per-column statistics of one silo's rows, each released only over enough rows.

Plain numpy, no party and no transport. :func:`profile_columns` computes, for every column, the
row count, missing rate, mean, standard deviation (population, ``ddof=0``), the requested
quantiles and the distinct count, and withholds (``None``, with the statistic's name in
``withheld``) each one that rests on fewer than ``min_rows`` rows:

* count and missing rate: over all rows of the population;
* mean, standard deviation and distinct count: over the column's non-missing rows;
* a quantile ``q`` is the value of rank ``k = ceil(q·c)`` among the ``c`` sorted non-missing
  values (numpy's ``inverted_cdf``: always a value of some row), released only when at least
  ``min_rows`` rows lie on each side of it (``k ≥ min_rows`` and ``c − k + 1 ≥ min_rows``), so an
  extreme quantile of a small group, which is nearly one row's value, is withheld.

The correlation helpers (:func:`standardise`, :func:`local_correlation`, :func:`vif`) serve the
cross-silo matrix of :mod:`fedsilo.protocols.stats.correlation`. Reasoning: ``docs/leakage.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fedsilo.errors import DataError

__all__ = [
    "Standardised",
    "local_correlation",
    "profile_column",
    "profile_columns",
    "quantile_rank",
    "standardise",
    "vif",
]

FloatArray = npt.NDArray[np.float64]


def quantile_rank(q: float, count: int) -> int:
    """The 1-based rank of quantile ``q`` among ``count`` sorted values (inverted CDF)."""
    return min(count, max(1, math.ceil(q * count)))


def _number(value: float) -> float:
    return float(value)


def profile_column(
    values: npt.ArrayLike, quantiles: Sequence[float], min_rows: int
) -> dict[str, Any]:
    """The statistics of one column (NaN = missing) under the ``min_rows`` guard."""
    col = np.asarray(values, dtype=np.float64)
    rows = int(col.size)
    present = col[~np.isnan(col)]
    count = int(present.size)
    out: dict[str, Any] = {"rows": rows, "count": None, "missing_rate": None}
    withheld: list[str] = []
    if rows >= min_rows:
        out["count"] = count
        out["missing_rate"] = (rows - count) / rows if rows else None
    else:
        withheld += ["count", "missing_rate"]
    enough = count >= min_rows and count > 0
    out["mean"] = _number(present.mean()) if enough else None
    out["std"] = _number(present.std()) if enough else None
    out["distinct"] = int(np.unique(present).size) if enough else None
    if not enough:
        withheld += ["mean", "std", "distinct"]
    ordered = np.sort(present)
    shown: dict[str, float | None] = {}
    for q in quantiles:
        k = quantile_rank(q, count) if count else 0
        ok = count > 0 and k >= min_rows and count - k + 1 >= min_rows
        shown[_q_name(q)] = _number(ordered[k - 1]) if ok else None
        if not ok:
            withheld.append(f"quantile {_q_name(q)}")
    out["quantiles"] = shown
    out["withheld"] = withheld
    return out


def _q_name(q: float) -> str:
    return f"{q:g}"


def profile_columns(
    x: npt.ArrayLike, names: Sequence[str], quantiles: Sequence[float], min_rows: int
) -> dict[str, dict[str, Any]]:
    """:func:`profile_column` for every column of ``x`` (rows × ``len(names)``), by name."""
    data = np.asarray(x, dtype=np.float64)
    if data.ndim != 2 or data.shape[1] != len(names):
        raise DataError(f"expected a matrix with {len(names)} columns")
    return {name: profile_column(data[:, j], quantiles, min_rows) for j, name in enumerate(names)}


@dataclass(frozen=True)
class Standardised:
    """The columns a silo puts in the correlation matrix, standardised over the population.

    ``z = (x − mean) / std`` with the population standard deviation, so that the Pearson
    correlation of two columns is exactly ``mean(z_a · z_b)`` over the same rows. Columns with a
    missing value (their pairs would need the other silo's missing pattern) or a constant value
    (no correlation is defined) are left out, with the reason in ``excluded``.
    """

    names: list[str]
    z: FloatArray
    excluded: dict[str, str]

    @property
    def rows(self) -> int:
        return int(self.z.shape[0])


def standardise(x: npt.ArrayLike, names: Sequence[str]) -> Standardised:
    """Standardise the columns that can enter the correlation matrix."""
    data = np.asarray(x, dtype=np.float64)
    if data.ndim != 2 or data.shape[1] != len(names):
        raise DataError(f"expected a matrix with {len(names)} columns")
    keep, excluded = [], {}
    for j, name in enumerate(names):
        col = data[:, j]
        if np.isnan(col).any():
            excluded[name] = "has missing values"
        elif col.size == 0 or float(col.std()) == 0.0:
            excluded[name] = "is constant"
        else:
            keep.append(j)
    sub = data[:, keep]
    z = (sub - sub.mean(axis=0)) / sub.std(axis=0) if keep else np.empty((data.shape[0], 0))
    return Standardised([names[j] for j in keep], np.asarray(z, dtype=np.float64), excluded)


def local_correlation(std: Standardised) -> FloatArray:
    """The Pearson correlations among one silo's own standardised columns."""
    if std.rows == 0:
        raise DataError("no rows to correlate")
    return np.asarray(std.z.T @ std.z / std.rows, dtype=np.float64)


def vif(corr: npt.ArrayLike) -> FloatArray:
    """Variance inflation factors: the diagonal of the inverse correlation matrix.

    ``VIF_j = 1 / (1 − R²_j)`` where ``R²_j`` is the fit of column ``j`` on all the others;
    a singular matrix (a column that is a linear function of others) gives ``inf`` everywhere.
    """
    r = np.asarray(corr, dtype=np.float64)
    if r.ndim != 2 or r.shape[0] != r.shape[1]:
        raise DataError("a correlation matrix must be square")
    if r.shape[0] == 0:
        return np.empty(0)
    try:
        inv = np.linalg.inv(r)
    except np.linalg.LinAlgError:
        return np.full(r.shape[0], np.inf)
    out = np.diag(inv).copy()
    out[~np.isfinite(out) | (out < 0)] = np.inf
    return np.asarray(out, dtype=np.float64)
