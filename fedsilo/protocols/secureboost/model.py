"""A SecureBoost model as it lives split across silos, and its federated prediction.

* :class:`SplitTable` — one party's lookup table: for every split node it owns,
  ``(tree, node) -> (feature, threshold, default_left)``. Only the owner ever holds the
  threshold; :meth:`SplitTable.route` answers "which rows go left" for all its nodes at once.
* :class:`SecureBoostModel` — the label holder's part: parameters, base margin, tree shapes and
  leaf values, the global feature map (party, local index, display name), its own split table.

Prediction: every party routes the rows through the nodes it owns
(:meth:`SplitTable.route`), the label holder walks the trees with those answers
(:meth:`SecureBoostModel.predict_margin`). With all features at one party this is the
centralized model, with the very same code. Everything is JSON (``to_dict``/``from_dict``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedsilo.errors import DataError
from fedsilo.ml.explain import Contributions, feature_label
from fedsilo.ml.mathfn import sigmoid
from fedsilo.ml.tree import Tree
from fedsilo.ml.treeshap import TreeShap

__all__ = ["FORMAT", "FeatureRef", "Routes", "SecureBoostModel", "SplitTable"]

FORMAT = "fedsilo.secureboost/1"

#: ``(tree, node) -> left mask over the routed rows``: what the parties tell the label holder
Routes = Mapping[tuple[int, int], np.ndarray]


@dataclass
class SplitTable:
    """The thresholds of the split nodes one party owns."""

    entries: dict[tuple[int, int], tuple[int, float, bool]] = field(default_factory=dict)

    def add(self, tree: int, node: int, feature: int, threshold: float, default_left: bool) -> None:
        self.entries[(tree, node)] = (int(feature), float(threshold), bool(default_left))

    def truncate(self, n_trees: int) -> None:
        self.entries = {k: v for k, v in self.entries.items() if k[0] < n_trees}

    def route(
        self, x: np.ndarray, trees: set[int] | None = None
    ) -> dict[tuple[int, int], np.ndarray]:
        """Left masks of ``x``'s rows at every owned node (of ``trees`` if given).

        XGBoost's rule on float32 values: left iff ``x < threshold``, NaN by ``default_left``.
        """
        x32 = np.asarray(x, dtype=np.float32)
        out = {}
        for key, (f, thr, dl) in sorted(self.entries.items()):
            if trees is None or key[0] in trees:
                col = x32[:, f]
                out[key] = np.where(np.isnan(col), dl, col < np.float32(thr))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "splits": [[t, n, f, thr, dl] for (t, n), (f, thr, dl) in sorted(self.entries.items())]
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SplitTable:
        table = cls()
        try:
            for t, n, f, thr, dl in d["splits"]:
                table.add(int(t), int(n), int(f), float(thr), bool(dl))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"bad split table: {exc}") from None
        return table


@dataclass(frozen=True)
class FeatureRef:
    """Where a global feature lives, and how it may be displayed."""

    party: str
    index: int
    name: str


@dataclass
class SecureBoostModel:
    """The label holder's part of a model (see the module docstring)."""

    params: dict[str, Any]
    base_margin: float
    features: list[FeatureRef]
    trees: list[Tree]
    own_party: str
    own_splits: SplitTable
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def n_trees(self) -> int:
        return len(self.trees)

    def predict_margin(self, n_rows: int, routes: Routes) -> np.ndarray:
        """Margins of ``n_rows`` rows given every owner's left masks for those rows."""
        margin = np.full(n_rows, self.base_margin)
        for t, tree in enumerate(self.trees):

            def go_left(node: int, rows: np.ndarray, t: int = t) -> np.ndarray:
                try:
                    return routes[(t, node)][rows]
                except KeyError:
                    raise DataError(f"no routing answer for tree {t} node {node}") from None

            margin += tree.leaf_values()[tree.leaf_index(n_rows, go_left)]
        return margin

    def predict_proba(self, n_rows: int, routes: Routes) -> np.ndarray:
        return sigmoid(self.predict_margin(n_rows, routes))

    def feature_labels(self) -> list[str]:
        """How each global feature is shown in explanations: the label holder's own by name, a
        passive party's as ``"bureau:age"`` where that party released its names at training,
        else as ``"bureau feature 3"`` (its own feature index, which the label holder learnt
        at training: docs/leakage.md, "Explanations")."""
        hidden = {
            p
            for p in {f.party for f in self.features}
            if all(f.name == f"{p}:#{f.index}" for f in self.features if f.party == p)
        }
        return [
            f.name
            if f.party == self.own_party
            else feature_label(f.party, f.name.split(":", 1)[-1], f.index, f.party not in hidden)
            for f in self.features
        ]

    def explainer(self) -> TreeShap:
        """Exact TreeSHAP over the model's trees (covers: hessian sums), built once per use."""
        return TreeShap(self.trees, self.base_margin, len(self.features))

    def explain(
        self, n_rows: int, routes: Routes, explainer: TreeShap | None = None
    ) -> Contributions:
        """Per-row TreeSHAP contributions of every global feature to the margin.

        Needs exactly what :meth:`predict_margin` needs: the left masks of every split node
        for the rows (federated prediction already sends them for all nodes, not only for the
        nodes on a row's path), so explaining reveals nothing more than scoring.
        """
        shap = explainer or self.explainer()

        def left(t: int, node: int) -> np.ndarray:
            try:
                return routes[(t, node)]
            except KeyError:
                raise DataError(f"no routing answer for tree {t} node {node}") from None

        values = shap.shap_values(n_rows, left)
        return Contributions(
            labels=self.feature_labels(),
            parties=[f.party for f in self.features],
            values=values,
            bias=np.full(n_rows, shap.expected_value),
        )

    def feature_importances(self, kind: str = "gain") -> dict[str, float]:
        """XGBoost's ``total_gain`` (``kind="gain"``) or split count (``"weight"``) per feature."""
        if kind not in ("gain", "weight"):
            raise DataError(f"unknown importance kind {kind!r}")
        out: dict[str, float] = {}
        for tree in self.trees:
            for node in tree.split_nodes():
                name = self.features[tree.feature[node]].name
                out[name] = out.get(name, 0.0) + (tree.gain[node] if kind == "gain" else 1.0)
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "params": self.params,
            "base_margin": self.base_margin,
            "features": [[f.party, f.index, f.name] for f in self.features],
            "trees": [t.to_dict() for t in self.trees],
            "own_party": self.own_party,
            "own_splits": self.own_splits.to_dict(),
            "metrics": self.metrics,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SecureBoostModel:
        if d.get("format") != FORMAT:
            raise DataError(f"not a {FORMAT} model")
        try:
            features = [FeatureRef(str(p), int(i), str(n)) for p, i, n in d["features"]]
            trees = [Tree.from_dict(t) for t in d["trees"]]
            model = cls(
                params=dict(d["params"]),
                base_margin=float(d["base_margin"]),
                features=features,
                trees=trees,
                own_party=str(d["own_party"]),
                own_splits=SplitTable.from_dict(d["own_splits"]),
                metrics=dict(d.get("metrics", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"bad SecureBoost model: {exc}") from None
        for tree in trees:
            if any(not 0 <= tree.feature[n] < len(features) for n in tree.split_nodes()):
                raise DataError("bad SecureBoost model: a split names an unknown feature")
        return model
