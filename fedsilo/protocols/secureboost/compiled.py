"""A SecureBoost model compiled to arrays, for online scoring of a few rows at a time.

Batch scoring walks each tree with one callback per node (:meth:`SecureBoostModel.predict_margin`),
which is fine for 10,000 rows and slow for one. Here the same model is flattened once:

* :class:`CompiledSplits` — one party's split nodes as arrays; :meth:`CompiledSplits.left` gives
  the side every row takes at every node in one numpy expression, by the very rule of
  :meth:`SplitTable.route` (float32, ``x < threshold``, NaN by ``default_left``);
* :class:`CompiledForest` — the label holder's trees as padded arrays; :meth:`CompiledForest.margin`
  walks all trees level by level from a decision matrix (rows x every split node of the model),
  then adds the leaf values tree by tree in the same order as batch scoring, so the scores are
  the same floats.

Columns of the decision matrix are the model's split nodes in ``(tree, node)`` order;
:meth:`CompiledForest.columns_of` says which belong to a party, in the order its
:class:`CompiledSplits` answers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedsilo.errors import DataError
from fedsilo.ml.mathfn import sigmoid
from fedsilo.protocols.secureboost.model import SecureBoostModel, SplitTable

__all__ = ["CompiledForest", "CompiledSplits"]


@dataclass(frozen=True)
class CompiledSplits:
    """One party's split nodes: ``keys[j] = (tree, node)`` with its feature, threshold, default."""

    keys: np.ndarray
    features: np.ndarray
    thresholds: np.ndarray
    default_left: np.ndarray

    @classmethod
    def of(cls, table: SplitTable) -> CompiledSplits:
        items = sorted(table.entries.items())
        return cls(
            keys=np.asarray([k for k, _ in items], dtype=np.int32).reshape(-1, 2),
            features=np.asarray([v[0] for _, v in items], dtype=np.intp),
            thresholds=np.asarray([v[1] for _, v in items], dtype=np.float32),
            default_left=np.asarray([v[2] for _, v in items], dtype=bool),
        )

    def left(self, x: np.ndarray) -> np.ndarray:
        """``(rows, nodes)``: True where the row goes left at the node."""
        values = np.asarray(x, dtype=np.float32)[:, self.features]
        return np.where(np.isnan(values), self.default_left, values < self.thresholds)


class CompiledForest:
    """The label holder's part of a SecureBoost model as arrays (see the module docstring)."""

    def __init__(self, model: SecureBoostModel) -> None:
        self.base_margin = float(model.base_margin)
        n_trees = model.n_trees
        width = max((t.n_nodes for t in model.trees), default=1)
        self.left = np.full((n_trees, width), -1, dtype=np.intp)
        self.right = np.full((n_trees, width), -1, dtype=np.intp)
        self.column = np.full((n_trees, width), -1, dtype=np.intp)
        self.values = np.zeros((n_trees, width))
        for t, tree in enumerate(model.trees):
            self.values[t, : tree.n_nodes] = tree.leaf_values()
        self.depth = max((max(t.depth, default=0) for t in model.trees), default=0)
        keys: list[tuple[int, int]] = []
        owners: list[str] = []
        defaults: list[bool] = []
        for t, tree in enumerate(model.trees):
            self.left[t, : tree.n_nodes] = tree.left
            self.right[t, : tree.n_nodes] = tree.right
            for node in tree.split_nodes():
                self.column[t, node] = len(keys)
                keys.append((t, node))
                owners.append(model.features[tree.feature[node]].party)
                defaults.append(bool(tree.default_left[node]))
        self.keys = np.asarray(keys, dtype=np.int32).reshape(-1, 2)
        self.owners = np.asarray(owners, dtype=object)
        self.defaults = np.asarray(defaults, dtype=bool)

    @property
    def n_columns(self) -> int:
        return len(self.keys)

    def columns_of(self, party: str) -> np.ndarray:
        """Decision-matrix columns of ``party``'s nodes, in ``(tree, node)`` order."""
        return np.flatnonzero(self.owners == party)

    def check_keys(self, party: str, keys: np.ndarray) -> np.ndarray:
        """The columns for an answer naming ``keys``: exactly the nodes ``party`` owns."""
        cols = self.columns_of(party)
        if keys.shape != (len(cols), 2) or not np.array_equal(keys, self.keys[cols]):
            raise DataError(f"party '{party}' answered for other nodes than the ones it owns")
        return cols

    def decisions(self, n_rows: int) -> np.ndarray:
        """A decision matrix with every node at its default side (a missing party's answer)."""
        return np.broadcast_to(self.defaults, (n_rows, self.n_columns)).copy()

    def margin(self, decisions: np.ndarray) -> np.ndarray:
        """Margins from the decision matrix ``(rows, columns)``: the same floats as batch."""
        n_rows = decisions.shape[0]
        n_trees = self.values.shape[0]
        pos = np.zeros((n_rows, n_trees), dtype=np.intp)
        trees = np.arange(n_trees)[None, :]
        rows = np.arange(n_rows)[:, None]
        for _ in range(self.depth):
            col = self.column[trees, pos]
            inner = col >= 0
            go_left = decisions[rows, np.where(inner, col, 0)]
            step = np.where(go_left, self.left[trees, pos], self.right[trees, pos])
            pos = np.where(inner, step, pos)
        # base + tree 0 + tree 1 + ..., strictly left to right as batch scoring adds them:
        # add.accumulate is sequential (no pairwise summation), so the floats are the same
        terms = np.empty((n_rows, n_trees + 1))
        terms[:, 0] = self.base_margin
        terms[:, 1:] = self.values[trees, pos]
        return np.add.accumulate(terms, axis=1)[:, -1]

    def predict_proba(self, decisions: np.ndarray) -> np.ndarray:
        return sigmoid(self.margin(decisions))
