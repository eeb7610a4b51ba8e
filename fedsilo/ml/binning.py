"""Per-feature quantile binning, done and kept by the feature's owner.

Tree growing only ever sees bin indices; the float thresholds behind them never leave the silo
that owns the column. A :class:`BinMapper` holds, per feature, ascending *cut values* with
XGBoost ``hist`` semantics:

* ``bin(x) = upper_bound(cuts, float32(x))`` clamped to the last bin, so bin ``b`` holds values
  ``cuts[b-1] <= x < cuts[b]``; the last cut is a sentinel above the column's maximum.
* NaN (or the configured ``missing`` value) goes to its own bin, index ``n_bins(f)``, right
  after the last real bin. A histogram of feature ``f`` therefore has ``n_bins(f) + 1`` slots.
* A split "bin <= t" is the float rule ``x < cuts[t]``; ``t == -1`` (nothing but missing goes
  left) is ``x < min_value``.

Values are compared in float32 because XGBoost casts its input to float32; with the same cuts
the two libraries put every row in the same bin. ``method="xgboost"`` takes the cuts from
XGBoost's own quantile sketch run on the owner's columns only. XGBoost sketches each column
independently, so a party sketching its own columns gets exactly the cuts XGBoost would use on the
joined table (checked in ``tests/test_tree.py``). ``method="quantile"`` is a dependency-free
approximation with the same conventions.

Everything serialises to JSON (:meth:`BinMapper.to_dict`); nothing here pickles.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedsilo.errors import DataError

__all__ = ["BinMapper", "fit_bins", "xgboost_cuts"]

#: widest bin index we store; bins are uint8 when every feature fits, else uint16
_MAX_BINS = 65_534


@dataclass(frozen=True)
class BinMapper:
    """Cut values of each feature of one party (see the module docstring for the rules)."""

    cuts: tuple[np.ndarray, ...]
    min_values: np.ndarray
    feature_names: tuple[str, ...]

    @property
    def n_features(self) -> int:
        return len(self.cuts)

    @property
    def n_bins(self) -> np.ndarray:
        """Real bins per feature (the missing bin not counted)."""
        return np.array([len(c) for c in self.cuts], dtype=np.int64)

    @property
    def slots(self) -> np.ndarray:
        """Histogram slots per feature: the real bins plus the missing bin."""
        return self.n_bins + 1

    def transform(self, x: np.ndarray, missing: float = float("nan")) -> np.ndarray:
        """Bin indices of ``x`` (rows x features); missing values get bin ``n_bins(f)``."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise DataError(f"expected {self.n_features} feature columns, got shape {x.shape}")
        dtype = np.uint8 if int(self.slots.max(initial=1)) <= 255 else np.uint16
        out = np.empty(x.shape, dtype=dtype)
        for f, cuts in enumerate(self.cuts):
            out[:, f] = _bin_column(x[:, f], cuts, missing)
        return out

    def threshold(self, feature: int, bin_: int) -> float:
        """Float threshold of the split "bin <= bin_": left iff ``x < threshold``."""
        if bin_ < 0:
            return float(self.min_values[feature])
        return float(self.cuts[feature][bin_])

    def select(self, features: Sequence[int]) -> BinMapper:
        """The mapper of a subset of features (a party holding some of the columns)."""
        return BinMapper(
            cuts=tuple(self.cuts[f] for f in features),
            min_values=self.min_values[list(features)],
            feature_names=tuple(self.feature_names[f] for f in features),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "cuts": [c.tolist() for c in self.cuts],
            "min_values": self.min_values.tolist(),
            "feature_names": list(self.feature_names),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BinMapper:
        try:
            cuts = tuple(np.asarray(c, dtype=np.float64) for c in d["cuts"])
            mins = np.asarray(d["min_values"], dtype=np.float64)
            names = tuple(str(n) for n in d["feature_names"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"bad bin mapper: {exc}") from None
        if len(mins) != len(cuts) or len(names) != len(cuts):
            raise DataError("bad bin mapper: lengths of cuts, min_values and names differ")
        for c in cuts:
            if c.ndim != 1 or len(c) == 0 or len(c) > _MAX_BINS or np.any(np.diff(c) <= 0):
                raise DataError("bad bin mapper: cuts must be non-empty and strictly ascending")
        return cls(cuts=cuts, min_values=mins, feature_names=names)


def _bin_column(col: np.ndarray, cuts: np.ndarray, missing: float) -> np.ndarray:
    """XGBoost's SearchBin on float32 values, vectorised; missing -> len(cuts)."""
    is_missing = np.isnan(col) if np.isnan(missing) else (col == missing) | np.isnan(col)
    vals = col.astype(np.float32).astype(np.float64)
    bins = np.searchsorted(cuts, vals, side="right")
    np.minimum(bins, len(cuts) - 1, out=bins)
    bins[is_missing] = len(cuts)
    return bins


def fit_bins(
    x: np.ndarray,
    *,
    max_bin: int = 256,
    method: str = "xgboost",
    feature_names: Sequence[str] | None = None,
    missing: float = float("nan"),
) -> BinMapper:
    """Learn the cuts of every column of ``x`` locally (rows x features, float)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise DataError(f"cannot bin an array of shape {x.shape}")
    if not 2 <= max_bin <= _MAX_BINS:
        raise DataError(f"max_bin must be in [2, {_MAX_BINS}], got {max_bin}")
    if not np.isnan(missing):
        x = np.where(x == missing, np.nan, x)
    names = tuple(feature_names) if feature_names else tuple(f"x{i}" for i in range(x.shape[1]))
    if len(names) != x.shape[1]:
        raise DataError("feature_names does not match the number of columns")
    if method == "xgboost":
        cuts = xgboost_cuts(x, max_bin)
    elif method == "quantile":
        cuts = [_quantile_cuts(x[:, f], max_bin) for f in range(x.shape[1])]
    else:
        raise DataError(f"unknown binning method {method!r}")
    mins = np.array([_min_value(x[:, f]) for f in range(x.shape[1])])
    return BinMapper(cuts=tuple(cuts), min_values=mins, feature_names=names)


def xgboost_cuts(x: np.ndarray, max_bin: int) -> list[np.ndarray]:
    """XGBoost's own ``hist`` cut values for each column (its sketch, run locally)."""
    import xgboost  # heavy import; only this binning method needs it

    dm = xgboost.QuantileDMatrix(np.asarray(x, dtype=np.float32), max_bin=max_bin)
    ptr, values = dm.get_quantile_cut()
    ptr = np.asarray(ptr)
    values = np.asarray(values, dtype=np.float64)
    cuts = [values[ptr[f] : ptr[f + 1]] for f in range(len(ptr) - 1)]
    return [c if len(c) else np.array([_sentinel(np.nan)]) for c in cuts]


def _quantile_cuts(col: np.ndarray, max_bin: int) -> np.ndarray:
    """Dependency-free cuts: distinct quantiles (the minimum excluded) plus a sentinel."""
    vals = np.sort(col[~np.isnan(col)].astype(np.float32).astype(np.float64))
    if len(vals) == 0:
        return np.array([_sentinel(np.nan)])
    uniq = np.unique(vals)
    if len(uniq) <= max_bin:
        inner = uniq[1:]
    else:
        ranks = np.ceil(np.arange(1, max_bin) * len(vals) / max_bin).astype(np.int64)
        inner = np.unique(vals[np.clip(ranks, 0, len(vals) - 1)])
        inner = inner[inner > uniq[0]]
    return np.append(inner, _sentinel(uniq[-1]))


def _sentinel(max_value: float) -> float:
    """XGBoost's last cut: strictly above the maximum, in float32."""
    if np.isnan(max_value):
        return 1e-5
    return float(np.float32(max_value + (abs(max_value) + 1e-5)))


def _min_value(col: np.ndarray) -> float:
    """Threshold below every value of the column (XGBoost's ``MinValues``)."""
    vals = col[~np.isnan(col)]
    if len(vals) == 0:
        return -1e-5
    m = float(np.float32(vals.min()))
    return float(np.float32(m - (abs(m) + 1e-5)))
