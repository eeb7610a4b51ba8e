"""A whole boosted-tree model: shared bin cuts, trees, base margin; predicts anywhere.

Horizontal federated XGBoost ends with every silo holding the same complete model (every
threshold is a shared bin edge, see :mod:`fedsilo.ml.grid_sketch`), so unlike a SecureBoost model
it can predict alone, be exported as an xgboost model (:mod:`fedsilo.ml.xgb_export`) and report
feature importance.

Routing is XGBoost's: a row goes left at a split on ``(feature, bin)`` iff
``float32(x) < cuts[feature][bin]`` (``bin == -1``: iff ``x < min_values[feature]``), a missing
value (NaN) by the node's default direction. Prediction bins the rows with the model's own
:class:`~fedsilo.ml.binning.BinMapper`, which applies exactly that rule, so fedsilo's predictions
and an exported xgboost model's agree.

JSON only (``to_dict`` / ``from_dict``), validated on the way in; nothing pickles.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedsilo.errors import DataError
from fedsilo.ml.binning import BinMapper
from fedsilo.ml.mathfn import sigmoid
from fedsilo.ml.tree import Tree, binned_go_left

__all__ = ["FORMAT", "IMPORTANCE_TYPES", "TreeEnsemble"]

FORMAT = "fedsilo.trees/1"
#: xgboost's ``Booster.get_score`` importance types
IMPORTANCE_TYPES = ("weight", "gain", "total_gain", "cover", "total_cover")


@dataclass
class TreeEnsemble:
    """Binary logistic boosted trees over one :class:`BinMapper` (module docstring)."""

    bins: BinMapper
    trees: list[Tree]
    base_margin: float
    #: a value that means "missing" besides NaN (xgboost's ``missing``); None: only NaN
    missing: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def feature_names(self) -> list[str]:
        return list(self.bins.feature_names)

    @property
    def n_features(self) -> int:
        return self.bins.n_features

    def threshold(self, tree: int, node: int) -> float:
        """Float split condition of a split node: left iff ``x < threshold``."""
        t = self.trees[tree]
        return self.bins.threshold(t.feature[node], t.bin[node])

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        """Margins (log-odds) of the rows of ``x`` (rows x features, NaN = missing)."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise DataError(f"expected {self.n_features} feature columns, got shape {x.shape}")
        if np.isinf(x).any():
            raise DataError("features hold infinite values")
        binned = self.bins.transform(x, missing=math.nan if self.missing is None else self.missing)
        margin = np.full(len(x), self.base_margin)
        for tree in self.trees:
            go_left = binned_go_left(binned, tree, self.bins.n_bins)
            margin += tree.leaf_values()[tree.leaf_index(len(x), go_left)]
        return margin

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Probability of class 1 for each row (1-d)."""
        return sigmoid(self.decision_function(x))

    def get_score(self, importance_type: str = "weight") -> dict[str, float]:
        """xgboost's ``Booster.get_score``: per used feature name, over every split node."""
        if importance_type not in IMPORTANCE_TYPES:
            raise DataError(f"unknown importance type {importance_type!r}")
        count: dict[int, int] = {}
        gain: dict[int, float] = {}
        cover: dict[int, float] = {}
        for tree in self.trees:
            for node in tree.split_nodes():
                f = tree.feature[node]
                count[f] = count.get(f, 0) + 1
                gain[f] = gain.get(f, 0.0) + tree.gain[node]
                cover[f] = cover.get(f, 0.0) + tree.cover[node]
        totals: dict[int, float] = {f: float(c) for f, c in count.items()}
        if importance_type in ("gain", "total_gain"):
            totals = gain
        elif importance_type in ("cover", "total_cover"):
            totals = cover
        divide = importance_type in ("gain", "cover")
        names = self.feature_names
        return {names[f]: v / (count[f] if divide else 1) for f, v in sorted(totals.items())}

    def feature_importances(self, importance_type: str = "gain") -> np.ndarray:
        """scikit-learn's ``feature_importances_``: :meth:`get_score` over all features, sum 1."""
        score = self.get_score(importance_type)
        out = np.array([score.get(name, 0.0) for name in self.feature_names], dtype=np.float64)
        total = out.sum()
        return out / total if total > 0 else out

    def truncate(self, n_trees: int) -> None:
        """Keep the first ``n_trees`` trees (early stopping's best iteration)."""
        del self.trees[n_trees:]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "bins": self.bins.to_dict(),
            "base_margin": self.base_margin,
            "missing": self.missing,
            "trees": [t.to_dict() for t in self.trees],
            "params": self.params,
            "info": self.info,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TreeEnsemble:
        if not isinstance(d, Mapping) or d.get("format") != FORMAT:
            raise DataError(f"not a {FORMAT} model")
        try:
            model = cls(
                bins=BinMapper.from_dict(d["bins"]),
                trees=[Tree.from_dict(t) for t in d["trees"]],
                base_margin=float(d["base_margin"]),
                missing=None if d.get("missing") is None else float(d["missing"]),
                params=dict(d.get("params", {})),
                info=dict(d.get("info", {})),
            )
            model._check()
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"bad tree model: {exc}") from None
        return model

    def _check(self) -> None:
        """Refuse a model whose splits name features or bins its cuts do not have."""
        if not math.isfinite(self.base_margin) or not math.isfinite(self.missing or 0.0):
            raise DataError("bad tree model: base margin is not finite")
        n_bins = self.bins.n_bins
        for tree in self.trees:
            for node in tree.split_nodes():
                f, b = tree.feature[node], tree.bin[node]
                if not 0 <= f < self.n_features or not -1 <= b < n_bins[f]:
                    raise DataError("bad tree model: a split names an unknown feature or bin")
            if not all(math.isfinite(v) for v in tree.value):
                raise DataError("bad tree model: a leaf value is not finite")
