"""Histogram tree growing with XGBoost ``hist`` semantics, whatever computes the histograms.

One grower and one split finder serve every mode: centralized (all features in one process),
vertical federated (SecureBoost: histograms of passive parties' features come back encrypted and
are decrypted by the label holder) and horizontal (histograms summed under CKKS). A mode only
supplies a :class:`HistogramSource`.

API
---
``HistLayout(slots)``
    Global feature order: feature ``f`` owns ``slots[f] = n_bins(f) + 1`` consecutive histogram
    slots, the last one being the missing-value bin (see :mod:`fedsilo.ml.binning`). In a
    federated job the layout is the concatenation of the parties' layouts, label holder first.
``NodeHistogram(grad, hess, total_grad, total_hess)``
    Per-slot gradient/hessian sums of one node plus the node's totals, in *source units*: exact
    ``int64`` fixed-point sums (``scale = 2**-bits``, see :func:`quantize`) or floats
    (``scale = 1``). Sums are subtracted in those units, so histogram subtraction is exact for
    integer sources and the centralized and federated modes agree bit for bit.
``HistogramSource`` (protocol)
    ``layout``, ``scale``, ``histograms(node_ids) -> {node: NodeHistogram}`` and
    ``partition({node: NodeSplit}) -> {node: (n_left, n_right)}``: route the node's rows,
    return how many (sampled) rows went each way; the grower then asks only for the smaller
    child's histogram and derives the larger one by subtraction.
``find_best_split(hist, layout, params, scale, feature_mask) -> Split | None``
    XGBoost's enumeration: per feature a forward pass (missing goes right) and, when the node
    has missing values for that feature, a backward pass (missing goes left). Ties are broken
    as XGBoost does: the first candidate in (feature, forward bins ascending, backward bins
    descending) order wins, so the lowest global feature index wins between features.
``TreeGrower`` / ``grow_tree(source, params, feature_mask=None) -> Tree``
    Depth-wise growth. ``TreeGrower`` is the same algorithm as an explicit state machine
    (``needs`` / ``add_histograms`` / ``add_partition``) for drivers that must return between
    rounds, such as a silo step answering the coordinator; ``grow_tree`` just loops over it.
``Tree``
    Node arrays (JSON via ``to_dict`` / ``from_dict``); ``leaf_index(n_rows, go_left)`` routes
    rows given a callback ``go_left(node, rows) -> bool mask`` so the owner of a split can be
    anywhere.
``logistic_gradients``, ``base_margin``, ``quantize``, ``precision_bits``
    The binary logistic objective and its fixed-point encoding.
``plain_histogram``, ``RowPartition``, ``PlainSource``
    Plaintext histogram building (numpy, exact on fixed-point integers) and row bookkeeping;
    ``PlainSource`` is the centralized mode.

Gains follow XGBoost's code rather than its docs: ``gain = GL²/(HL+λ) + GR²/(HR+λ) − G²/(H+λ)``
(twice the textbook loss reduction, the figure XGBoost reports), a split needs
``gain > 1e-6`` and ``gain >= gamma``, both children need ``H >= min_child_weight`` and ``H > 0``;
a leaf is ``−G/(H+λ) · learning_rate``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

import numpy as np

from fedsilo.ml.mathfn import sigmoid  # re-exported: its home is mathfn

__all__ = [
    "HistLayout",
    "HistogramSource",
    "NodeHistogram",
    "NodeSplit",
    "PlainSource",
    "RowPartition",
    "Split",
    "Tree",
    "TreeGrower",
    "TreeParams",
    "base_margin",
    "binned_go_left",
    "find_best_split",
    "grow_tree",
    "leaf_weight",
    "logistic_gradients",
    "plain_histogram",
    "precision_bits",
    "quantize",
    "sigmoid",
]

#: XGBoost's ``kRtEps``: a split must improve the loss by more than this
RT_EPS = 1e-6
#: XGBoost's hessian floor for the logistic loss
HESS_FLOOR = 1e-16


# --- objective and encoding ------------------------------------------------------------------


@dataclass(frozen=True)
class TreeParams:
    """Per-tree regularisation, with XGBoost's names and defaults."""

    max_depth: int = 6
    learning_rate: float = 0.3
    reg_lambda: float = 1.0
    gamma: float = 0.0
    min_child_weight: float = 1.0


def logistic_gradients(margin: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gradient and hessian of the binary logistic loss at ``margin`` (XGBoost's floor)."""
    p = sigmoid(margin)
    return p - y, np.maximum(p * (1.0 - p), HESS_FLOOR)


def base_margin(y: np.ndarray, base_score: float | None) -> float:
    """Starting margin. ``None`` = the label mean, which is what XGBoost 3.x estimates."""
    score = float(np.mean(y)) if base_score is None else float(base_score)
    score = min(max(score, 1e-7), 1 - 1e-7)
    return math.log(score / (1.0 - score))


def precision_bits(n_rows: int, wanted: int = 30) -> int:
    """Fractional bits of the fixed-point gradients for ``n_rows`` rows.

    Why capped: a sum of ``n`` values with ``|v| <= 1`` must stay below 2**52 so that numpy's
    float64 ``bincount`` adds the integers exactly; ``wanted`` bits is the default otherwise.
    """
    return max(8, min(wanted, 52 - int(n_rows).bit_length()))


def quantize(values: np.ndarray, bits: int) -> np.ndarray:
    """Round to the fixed-point grid ``2**-bits``: the exact integers every mode sums."""
    return np.rint(np.ldexp(np.asarray(values, dtype=np.float64), bits)).astype(np.int64)


# --- layout, histograms, splits ------------------------------------------------------------------


@dataclass(frozen=True)
class HistLayout:
    """Slots per global feature (real bins + 1 missing slot); see the module docstring."""

    slots: tuple[int, ...]

    @classmethod
    def concat(cls, *parts: Sequence[int] | np.ndarray) -> HistLayout:
        return cls(tuple(int(s) for part in parts for s in part))

    @property
    def n_features(self) -> int:
        return len(self.slots)

    @cached_property
    def ptr(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.slots, dtype=np.int64)])

    @property
    def n_slots(self) -> int:
        return int(self.ptr[-1])

    @cached_property
    def _candidates(self) -> tuple[np.ndarray, ...]:
        """Slot, feature and direction of every candidate, in XGBoost's enumeration order."""
        slot, feat, backward = [], [], []
        for f in range(self.n_features):
            real = np.arange(self.ptr[f], self.ptr[f + 1] - 1)
            slot += [real, real[::-1]]
            feat += [np.full(2 * len(real), f)]
            backward += [np.zeros(len(real), bool), np.ones(len(real), bool)]
        return (np.concatenate(slot), np.concatenate(feat), np.concatenate(backward))


@dataclass
class NodeHistogram:
    """Per-slot sums of one node and the node's totals (source units)."""

    grad: np.ndarray
    hess: np.ndarray
    total_grad: Any
    total_hess: Any

    def __sub__(self, other: NodeHistogram) -> NodeHistogram:
        return NodeHistogram(
            self.grad - other.grad,
            self.hess - other.hess,
            self.total_grad - other.total_grad,
            self.total_hess - other.total_hess,
        )


@dataclass(frozen=True)
class Split:
    """The winning split of a node: ``bin <= bin_`` goes left, missing per ``default_left``.

    ``feature`` is global (layout order); sums are in source units.
    """

    feature: int
    bin: int
    default_left: bool
    gain: float
    left_grad: Any
    left_hess: Any
    right_grad: Any
    right_hess: Any


@dataclass(frozen=True)
class NodeSplit:
    """A split to apply: the node, its split and the ids its children will have."""

    node: int
    split: Split
    left: int
    right: int


def _gain(g: np.ndarray, h: np.ndarray, reg_lambda: float) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(h > 0, g * g / (h + reg_lambda), 0.0)


def find_best_split(
    hist: NodeHistogram,
    layout: HistLayout,
    params: TreeParams,
    scale: float = 1.0,
    feature_mask: np.ndarray | None = None,
) -> Split | None:
    """The best valid split of a node, or None; XGBoost's rules (module docstring)."""
    slot, feat, backward = layout._candidates
    if len(slot) == 0:
        return None
    ptr = layout.ptr
    zero = hist.grad[:0].sum()  # a zero of the histogram's own dtype (exact integers stay exact)
    cg = np.concatenate([[zero], np.cumsum(hist.grad)])
    ch = np.concatenate([[zero], np.cumsum(hist.hess)])
    start, miss = ptr[feat], ptr[feat + 1] - 1
    # forward: bins [start, slot] left, the rest and missing right; backward: bins [slot, miss)
    # right, the rest and missing left.
    lg = np.where(backward, hist.total_grad - (cg[miss] - cg[slot]), cg[slot + 1] - cg[start])
    lh = np.where(backward, hist.total_hess - (ch[miss] - ch[slot]), ch[slot + 1] - ch[start])
    rg, rh = hist.total_grad - lg, hist.total_hess - lh
    flg, flh, frg, frh = (np.asarray(a, dtype=np.float64) * scale for a in (lg, lh, rg, rh))
    tot_g, tot_h = float(hist.total_grad) * scale, float(hist.total_hess) * scale
    lam, mcw = params.reg_lambda, params.min_child_weight
    root = tot_g * tot_g / (tot_h + lam) if tot_h >= mcw and tot_h > 0 else 0.0
    loss = _gain(flg, flh, lam) + _gain(frg, frh, lam) - root
    ok = (flh >= mcw) & (frh >= mcw)
    has_missing = (hist.grad[ptr[1:] - 1] != 0) | (hist.hess[ptr[1:] - 1] != 0)
    ok &= ~backward | has_missing[feat]
    if feature_mask is not None:
        ok &= np.asarray(feature_mask, dtype=bool)[feat]
    loss = np.where(ok, loss, -np.inf)
    best = int(np.argmax(loss))  # first maximum: XGBoost's tie rule
    chg = float(loss[best])
    if not (chg > RT_EPS and chg >= params.gamma) or flh[best] <= 0 or frh[best] <= 0:
        return None
    b = int(slot[best] - ptr[feat[best]])
    return Split(
        feature=int(feat[best]),
        bin=b - 1 if backward[best] else b,
        default_left=bool(backward[best]),
        gain=chg,
        left_grad=lg[best],
        left_hess=lh[best],
        right_grad=rg[best],
        right_hess=rh[best],
    )


def leaf_weight(grad: float, hess: float, params: TreeParams) -> float:
    """XGBoost's ``CalcWeight`` times the learning rate (0 for a node too light to trust)."""
    if hess < params.min_child_weight or hess <= 0:
        return 0.0
    return -grad / (hess + params.reg_lambda) * params.learning_rate


# --- the tree ----------------------------------------------------------------------------------


@dataclass
class Tree:
    """A tree as parallel node arrays; node ids grow level by level, parents before children.

    ``value`` is the leaf value (learning rate applied) for leaves and the would-be value for
    inner nodes; ``cover`` the hessian sum; ``gain`` the split's gain (0 for leaves).
    """

    left: list[int] = field(default_factory=list)
    right: list[int] = field(default_factory=list)
    parent: list[int] = field(default_factory=list)
    depth: list[int] = field(default_factory=list)
    feature: list[int] = field(default_factory=list)
    bin: list[int] = field(default_factory=list)
    default_left: list[bool] = field(default_factory=list)
    value: list[float] = field(default_factory=list)
    gain: list[float] = field(default_factory=list)
    cover: list[float] = field(default_factory=list)

    @property
    def n_nodes(self) -> int:
        return len(self.left)

    def is_leaf(self, node: int) -> bool:
        return self.left[node] < 0

    def add_node(self, parent: int, depth: int) -> int:
        for arr, v in ((self.left, -1), (self.right, -1), (self.feature, -1), (self.bin, -1)):
            arr.append(v)
        self.parent.append(parent)
        self.depth.append(depth)
        self.default_left.append(False)
        self.value.append(0.0)
        self.gain.append(0.0)
        self.cover.append(0.0)
        return self.n_nodes - 1

    def split_nodes(self) -> list[int]:
        return [n for n in range(self.n_nodes) if not self.is_leaf(n)]

    def leaf_index(
        self, n_rows: int, go_left: Callable[[int, np.ndarray], np.ndarray]
    ) -> np.ndarray:
        """Leaf of every row; ``go_left(node, rows)`` answers for the node's owner."""
        pos = np.zeros(n_rows, dtype=np.int32)
        for node in self.split_nodes():
            rows = np.flatnonzero(pos == node)
            if len(rows):
                left = np.asarray(go_left(node, rows), dtype=bool)
                pos[rows[left]] = self.left[node]
                pos[rows[~left]] = self.right[node]
        return pos

    def leaf_values(self) -> np.ndarray:
        return np.asarray(self.value, dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(getattr(self, k)) for k in _TREE_FIELDS}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Tree:
        tree = cls(**{k: list(d[k]) for k in _TREE_FIELDS})
        n = tree.n_nodes
        if any(len(getattr(tree, k)) != n for k in _TREE_FIELDS):
            raise ValueError("tree arrays have different lengths")
        for node in tree.split_nodes():  # children after parents: leaf_index relies on it
            if not node < tree.left[node] < n or not node < tree.right[node] < n:
                raise ValueError(f"tree node {node} has out-of-order children")
        return tree


_TREE_FIELDS = (
    "left",
    "right",
    "parent",
    "depth",
    "feature",
    "bin",
    "default_left",
    "value",
    "gain",
    "cover",
)


def binned_go_left(
    bins: np.ndarray, tree: Tree, n_bins: np.ndarray, feature_offset: int = 0
) -> Callable[[int, np.ndarray], np.ndarray]:
    """``go_left`` for rows binned by one party whose first global feature is ``feature_offset``."""

    def go_left(node: int, rows: np.ndarray) -> np.ndarray:
        f = tree.feature[node] - feature_offset
        b = bins[rows, f].astype(np.int64)
        return np.where(b == n_bins[f], tree.default_left[node], b <= tree.bin[node])

    return go_left


# --- growing -----------------------------------------------------------------------------------


class HistogramSource(Protocol):
    """Where the grower's histograms come from and where its splits are applied."""

    @property
    def layout(self) -> HistLayout: ...

    @property
    def scale(self) -> float: ...

    def histograms(self, node_ids: Sequence[int]) -> Mapping[int, NodeHistogram]: ...

    def partition(self, splits: Mapping[int, NodeSplit]) -> Mapping[int, tuple[int, int]]: ...


class TreeGrower:
    """Depth-wise growth as a state machine: histograms in, splits out, partitions in, repeat.

    Why a state machine: in a federated job the label holder cannot block while the coordinator
    relays its requests, so each round must be resumable; :func:`grow_tree` drives it in a loop.
    """

    def __init__(
        self,
        layout: HistLayout,
        params: TreeParams,
        *,
        scale: float = 1.0,
        feature_mask: np.ndarray | None = None,
    ) -> None:
        self.layout, self.params, self.scale = layout, params, scale
        self.feature_mask = feature_mask
        self.tree = Tree()
        self.tree.add_node(parent=-1, depth=0)
        self._frontier: list[int] = [0]
        self._parents: dict[int, NodeHistogram] = {}  # split nodes whose children come next
        self._pending: dict[int, NodeSplit] = {}
        self._derive: list[tuple[int, int, int]] = []  # (parent, built child, derived child)
        self._needs: list[int] = [0]
        self.done = False

    def needs(self) -> list[int]:
        """Nodes whose histograms the source must build for the next :meth:`add_histograms`."""
        return list(self._needs)

    def add_histograms(self, built: Mapping[int, NodeHistogram]) -> dict[int, NodeSplit]:
        """Take the built histograms, decide the frontier's splits, return those to apply."""
        hists = self._absorb(built)
        splits: dict[int, NodeSplit] = {}
        for node in self._frontier:
            hist = hists[node]
            self._set_stats(node, hist.total_grad, hist.total_hess)
            split = find_best_split(hist, self.layout, self.params, self.scale, self.feature_mask)
            if split is not None:
                splits[node] = self._add_children(node, split)
                if self.tree.depth[node] + 1 < self.params.max_depth:
                    self._parents[node] = hist
        self._pending, self._frontier, self._needs = splits, [], []
        self.done = not splits
        return splits

    def add_partition(self, counts: Mapping[int, tuple[int, int]]) -> list[int]:
        """Take how many rows each split sent left/right; return the histograms to build next.

        Children at ``max_depth`` are leaves already (their sums come with the split), so the
        last level of a tree needs a partition but no histogram.
        """
        self._derive, self._needs = [], []
        for node, ns in self._pending.items():
            if node not in self._parents:
                continue
            n_left, n_right = counts[node]
            small, large = (ns.left, ns.right) if n_left <= n_right else (ns.right, ns.left)
            self._derive.append((node, small, large))
            self._needs.append(small)
            self._frontier += [ns.left, ns.right]
        self._pending = {}
        self.done = not self._needs
        return list(self._needs)

    def _absorb(self, built: Mapping[int, NodeHistogram]) -> dict[int, NodeHistogram]:
        """Built histograms plus the siblings derived by subtraction from their parents."""
        if not self._derive:
            return {0: built[0]}
        hists: dict[int, NodeHistogram] = {}
        for parent, small, large in self._derive:
            parent_hist = self._parents.pop(parent)
            hists[small] = built[small]
            hists[large] = parent_hist - built[small]
        self._derive = []
        return hists

    def _add_children(self, node: int, split: Split) -> NodeSplit:
        t = self.tree
        depth = t.depth[node] + 1
        left, right = t.add_node(node, depth), t.add_node(node, depth)
        t.left[node], t.right[node] = left, right
        t.feature[node], t.bin[node] = split.feature, split.bin
        t.default_left[node], t.gain[node] = split.default_left, split.gain
        self._set_stats(left, split.left_grad, split.left_hess)
        self._set_stats(right, split.right_grad, split.right_hess)
        return NodeSplit(node=node, split=split, left=left, right=right)

    def _set_stats(self, node: int, grad: Any, hess: Any) -> None:
        g, h = float(grad) * self.scale, float(hess) * self.scale
        self.tree.cover[node] = h
        self.tree.value[node] = leaf_weight(g, h, self.params)


def grow_tree(
    source: HistogramSource, params: TreeParams, *, feature_mask: np.ndarray | None = None
) -> Tree:
    """Grow one tree against ``source`` (see :class:`TreeGrower`)."""
    grower = TreeGrower(source.layout, params, scale=source.scale, feature_mask=feature_mask)
    need = grower.needs()
    while True:
        splits = grower.add_histograms(source.histograms(need))
        if grower.done:
            break
        need = grower.add_partition(source.partition(splits))
        if grower.done:
            break
    return grower.tree


# --- plaintext histograms and row bookkeeping ----------------------------------------------------


def plain_histogram(
    bins: np.ndarray, rows: np.ndarray, grad: np.ndarray, hess: np.ndarray, layout: HistLayout
) -> tuple[np.ndarray, np.ndarray]:
    """Per-slot sums of ``grad``/``hess`` over ``rows`` of a binned matrix (one party's layout).

    ``grad``/``hess`` hold fixed-point integers; float64 ``bincount`` adds them exactly because
    :func:`precision_bits` keeps every sum below 2**52. Returns ``int64`` arrays.
    """
    n_slots = layout.n_slots
    if len(rows) == 0 or bins.shape[1] == 0:
        z = np.zeros(n_slots, dtype=np.int64)
        return z, z.copy()
    flat = (bins[rows].astype(np.int64) + layout.ptr[:-1]).ravel()
    f = bins.shape[1]
    g = np.repeat(grad[rows].astype(np.float64), f)
    h = np.repeat(hess[rows].astype(np.float64), f)
    gs = np.bincount(flat, weights=g, minlength=n_slots)
    hs = np.bincount(flat, weights=h, minlength=n_slots)
    return gs.astype(np.int64), hs.astype(np.int64)


class RowPartition:
    """Which node every row is in; ``sampled`` marks the rows of this tree's subsample.

    All rows are routed (their margins must be updated), only sampled rows enter histograms.
    """

    def __init__(self, n_rows: int, sampled: np.ndarray | None = None) -> None:
        self.positions = np.zeros(n_rows, dtype=np.int32)
        self.sampled = np.ones(n_rows, dtype=bool) if sampled is None else sampled.astype(bool)

    def rows(self, node: int) -> np.ndarray:
        return np.flatnonzero(self.positions == node)

    def sampled_rows(self, node: int) -> np.ndarray:
        return np.flatnonzero((self.positions == node) & self.sampled)

    def apply(self, ns: NodeSplit, rows: np.ndarray, left_mask: np.ndarray) -> tuple[int, int]:
        """Move the node's ``rows`` to its children; return sampled counts (left, right)."""
        left_mask = np.asarray(left_mask, dtype=bool)
        self.positions[rows[left_mask]] = ns.left
        self.positions[rows[~left_mask]] = ns.right
        n_left = int(np.count_nonzero(self.sampled[rows[left_mask]]))
        n_right = int(np.count_nonzero(self.sampled[rows[~left_mask]]))
        return n_left, n_right


class PlainSource:
    """The centralized mode: every feature binned in this process, fixed-point gradients."""

    def __init__(
        self,
        bins: np.ndarray,
        n_bins: np.ndarray,
        grad: np.ndarray,
        hess: np.ndarray,
        *,
        bits: int,
        sampled: np.ndarray | None = None,
    ) -> None:
        self.bins, self.n_bins = bins, np.asarray(n_bins)
        self.grad, self.hess = grad, hess
        self._layout = HistLayout.concat(self.n_bins + 1)
        self._scale = math.ldexp(1.0, -bits)
        self.rows = RowPartition(len(bins), sampled)

    @property
    def layout(self) -> HistLayout:
        return self._layout

    @property
    def scale(self) -> float:
        return self._scale

    def histograms(self, node_ids: Sequence[int]) -> dict[int, NodeHistogram]:
        out = {}
        for node in node_ids:
            rows = self.rows.sampled_rows(node)
            g, h = plain_histogram(self.bins, rows, self.grad, self.hess, self._layout)
            out[node] = NodeHistogram(g, h, int(self.grad[rows].sum()), int(self.hess[rows].sum()))
        return out

    def partition(self, splits: Mapping[int, NodeSplit]) -> dict[int, tuple[int, int]]:
        counts = {}
        for node, ns in splits.items():
            rows = self.rows.rows(node)
            f = ns.split.feature
            b = self.bins[rows, f].astype(np.int64)
            left = np.where(b == self.n_bins[f], ns.split.default_left, b <= ns.split.bin)
            counts[node] = self.rows.apply(ns, rows, left)
        return counts
