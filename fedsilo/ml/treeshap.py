"""Exact path-dependent TreeSHAP for boosted trees, vectorised over rows.

The values are those of Lundberg et al.'s Algorithm 2 (``Tree SHAP``, the algorithm behind
xgboost's ``predict(..., pred_contribs=True)``): every leaf ``L`` of a tree contributes the
Shapley values of the game ``v_L(S) = value_L * prod_{j in S} o_j * prod_{j not in S} z_j`` over
the distinct features ``j`` on its path, where ``z_j`` is the product of the cover ratios
``cover(child) / cover(node)`` of the path's nodes on feature ``j`` (the share of training rows
that went that way: Algorithm 2's *zero fraction*) and ``o_j`` is 1 iff the row itself goes the
path's way at every one of those nodes (its *one fraction*). Algorithm 2's EXTEND / UNWIND keep,
for each prefix of the path, the weights ``|S|! (k - |S| - 1)! / k!`` summed over subsets; here
the same weights are the coefficients of ``prod_{j != i} (z_j + o_j t)``, so

    phi_i = value_L * (o_i - z_i) * sum_s  s! (k - 1 - s)! / k! * [t^s] prod_{j != i} (z_j + o_j t)

which is what Algorithm 2 adds for feature ``i`` at leaf ``L`` (a feature repeated on the path is
merged, as its UNWIND does). The one fractions are 0 or 1, so a leaf with ``k`` distinct features
has only ``2**k`` possible contribution vectors: they are tabulated once per leaf (or, for long
paths, only for the patterns the rows show) and each row gathers its own by a ``k``-bit index.

Input: for every split node, whether each row goes *left* there (the route bits federated
prediction already produces, :class:`~fedsilo.protocols.secureboost.model.SecureBoostModel`).
The bias (expected value) is the base margin plus each tree's cover-weighted mean leaf value, so
``bias + phi.sum(axis=1)`` is the margin.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from fedsilo.ml.tree import Tree

__all__ = ["LeafPath", "TreeShap", "leaf_paths", "path_contributions"]

#: tabulate every pattern of a leaf up to this many distinct features (2**8 rows of k floats,
#: cheap to build); beyond it only the patterns present among the rows are computed
_FULL_TABLE_MAX_FEATURES = 8
#: tabulate a whole tree by its route bits up to this many split nodes (2**10 patterns)
_TREE_TABLE_MAX_NODES = 10

#: ``left(tree, node) -> bool mask over the rows``: does each row go left at that split node
LeftFn = Callable[[int, int], np.ndarray]


@dataclass(frozen=True)
class LeafPath:
    """One leaf's path: its distinct features, their zero fractions and the splits behind them.

    ``splits[j]`` lists ``(node, goes_left)`` for every node of the path on ``features[j]``.
    """

    value: float
    features: tuple[int, ...]
    zero: np.ndarray
    splits: tuple[tuple[tuple[int, bool], ...], ...]

    @property
    def null_value(self) -> float:
        """The leaf's share of the tree's expected value: ``value * prod(zero)``."""
        return float(self.value * np.prod(self.zero))


def leaf_paths(tree: Tree) -> list[LeafPath]:
    """Every leaf of ``tree`` with its path (covers are the trees' hessian sums)."""
    out: list[LeafPath] = []

    def walk(node: int, path: dict[int, tuple[float, list[tuple[int, bool]]]]) -> None:
        if tree.is_leaf(node):
            feats = tuple(path)
            out.append(
                LeafPath(
                    value=float(tree.value[node]),
                    features=feats,
                    zero=np.array([path[f][0] for f in feats], dtype=np.float64),
                    splits=tuple(tuple(path[f][1]) for f in feats),
                )
            )
            return
        f = int(tree.feature[node])
        for child, left in ((tree.left[node], True), (tree.right[node], False)):
            ratio = tree.cover[child] / tree.cover[node]
            zero, splits = path.get(f, (1.0, []))
            walk(child, {**path, f: (zero * ratio, [*splits, (node, left)])})

    walk(0, {})
    return out


def path_contributions(zero: np.ndarray, value: float, patterns: np.ndarray) -> np.ndarray:
    """Algorithm 2's contributions of one leaf for each one-fraction pattern.

    ``patterns``: integers whose bit ``j`` is ``o_j``. Returns ``(len(patterns), k)``.
    """
    k = len(zero)
    ones = ((patterns[:, None] >> np.arange(k)) & 1).astype(np.float64)
    weights = np.array(
        [math.factorial(s) * math.factorial(k - 1 - s) / math.factorial(k) for s in range(k)]
    )
    out = np.empty((len(patterns), k))
    for i in range(k):
        coef = np.zeros((len(patterns), k))
        coef[:, 0] = 1.0
        used = 0
        for j in range(k):
            if j == i:
                continue
            # multiply the polynomial (coefficients of t^0..t^used) by (z_j + o_j t)
            shifted = coef[:, : used + 1] * ones[:, j : j + 1]
            coef[:, : used + 1] *= zero[j]
            coef[:, 1 : used + 2] += shifted
            used += 1
        out[:, i] = value * (ones[:, i] - zero[i]) * (coef @ weights)
    return out


@dataclass(frozen=True)
class _TreeTable:
    """A small tree's contributions for every combination of its split nodes' route bits.

    ``nodes`` are the split nodes in bit order, ``features`` the distinct features the tree
    splits on, ``values[i, p]`` the contribution of ``features[i]`` for route pattern ``p``
    (bit ``b`` set iff the row goes left at ``nodes[b]``): the sum of its leaves' tables.
    """

    nodes: tuple[int, ...]
    features: tuple[int, ...]
    values: np.ndarray


def _tree_table(paths: Sequence[LeafPath], tables: Sequence[np.ndarray]) -> _TreeTable:
    nodes = tuple(sorted({n for lp in paths for splits in lp.splits for n, _ in splits}))
    features = tuple(sorted({f for lp in paths for f in lp.features}))
    bit = {n: b for b, n in enumerate(nodes)}
    row = {f: i for i, f in enumerate(features)}
    patterns = np.arange(1 << len(nodes), dtype=np.int64)
    values = np.zeros((len(features), len(patterns)))
    for lp, table in zip(paths, tables, strict=True):
        index = np.zeros(len(patterns), dtype=np.int64)
        for j, splits in enumerate(lp.splits):
            hot = np.ones(len(patterns), dtype=bool)
            for node, go_left in splits:
                hot &= ((patterns >> bit[node]) & 1).astype(bool) == go_left
            index |= hot.astype(np.int64) << j
        for j, f in enumerate(lp.features):
            values[row[f]] += table[j][index]
    return _TreeTable(nodes, features, values)


class TreeShap:
    """TreeSHAP of a list of trees over global feature indices (module docstring).

    A tree with at most ``_TREE_TABLE_MAX_NODES`` split nodes (every tree of depth <= 3) is
    tabulated whole, by its route bits, so a row costs one gather per feature of the tree;
    a larger tree is explained leaf by leaf.
    """

    def __init__(self, trees: Sequence[Tree], base_margin: float, n_features: int) -> None:
        self.n_features = n_features
        self.paths = [leaf_paths(t) for t in trees]
        self.expected_value = float(base_margin) + sum(
            lp.null_value for paths in self.paths for lp in paths
        )
        self._tables: dict[tuple[int, int], np.ndarray] = {}
        self._trees: dict[int, _TreeTable] = {}

    def _table(self, t: int, leaf: int, lp: LeafPath) -> np.ndarray:
        """``(k, 2**k)``: the leaf's contributions for every pattern, feature-major."""
        table = self._tables.get((t, leaf))
        if table is None:
            patterns = np.arange(1 << len(lp.features), dtype=np.int64)
            table = np.ascontiguousarray(path_contributions(lp.zero, lp.value, patterns).T)
            self._tables[(t, leaf)] = table
        return table

    def _tree(self, t: int) -> _TreeTable | None:
        paths = self.paths[t]
        if len(paths) - 1 > _TREE_TABLE_MAX_NODES:  # a binary tree: leaves - 1 split nodes
            return None
        table = self._trees.get(t)
        if table is None:
            leaf_tables = [self._table(t, i, lp) for i, lp in enumerate(paths)]
            table = self._trees[t] = _tree_table(paths, leaf_tables)
        return table

    def shap_values(self, n_rows: int, left: LeftFn) -> np.ndarray:
        """``(n_rows, n_features)`` contributions; ``left(t, node)`` gives a node's left mask."""
        phi = np.zeros((self.n_features, n_rows))
        for t, paths in enumerate(self.paths):
            whole = self._tree(t)
            if whole is not None:
                pattern = np.zeros(n_rows, dtype=np.uint16)
                for b, node in enumerate(whole.nodes):
                    mask = np.asarray(left(t, node), dtype=bool)
                    pattern |= mask.view(np.uint8).astype(np.uint16) << b
                for i, f in enumerate(whole.features):
                    phi[f] += whole.values[i][pattern]
                continue
            nodes = {node for lp in paths for splits in lp.splits for node, _ in splits}
            masks = {}
            for node in sorted(nodes):
                mask = np.asarray(left(t, node), dtype=bool)
                masks[node] = (~mask, mask)  # indexed by "goes left"
            for leaf, lp in enumerate(paths):
                self._add_leaf(phi, t, leaf, lp, masks, n_rows)
        return phi.T

    def _add_leaf(
        self,
        phi: np.ndarray,
        t: int,
        leaf: int,
        lp: LeafPath,
        masks: dict[int, tuple[np.ndarray, np.ndarray]],
        n_rows: int,
    ) -> None:
        k = len(lp.features)
        if k == 0:
            return
        if k <= _FULL_TABLE_MAX_FEATURES:
            # up to 8 bits the index fits a byte (cheaper to build and to gather by)
            index: np.ndarray = np.zeros(n_rows, dtype=np.uint8 if k <= 8 else np.int64)
            for j, splits in enumerate(lp.splits):
                bits: np.ndarray = self._hot(masks, splits).astype(index.dtype)
                index |= np.left_shift(bits, j, dtype=index.dtype)
            table = self._table(t, leaf, lp)
            for j, f in enumerate(lp.features):
                phi[f] += table[j][index]
            return
        wide = np.zeros(n_rows, dtype=np.int64)
        for j, splits in enumerate(lp.splits):
            wide |= self._hot(masks, splits).astype(np.int64) << j
        patterns, rows = np.unique(wide, return_inverse=True)
        table = np.ascontiguousarray(path_contributions(lp.zero, lp.value, patterns).T)
        for j, f in enumerate(lp.features):
            phi[f] += table[j][rows]

    @staticmethod
    def _hot(
        masks: dict[int, tuple[np.ndarray, np.ndarray]], splits: tuple[tuple[int, bool], ...]
    ) -> np.ndarray:
        """Rows that go the path's way at every one of ``splits`` (a feature's one fraction)."""
        node, go_left = splits[0]
        hot = masks[node][go_left]
        for node, go_left in splits[1:]:
            hot = hot & masks[node][go_left]
        return hot
