"""Horizontal federated XGBoost: gradient histograms summed under CKKS, three silos or more.

Silos hold the same features for different customers. Every exchange is a *secure sum*: each
silo encrypts a vector of integers under the job's CKKS key, the coordinator adds the ciphertexts
(:class:`Aggregator`, which holds the public context only: no secret key), and every silo
decrypts the same sum and rounds it back to exact integers
(:func:`fedsilo.crypto.ckks.round_exact`).
Decrypted sums never leave a silo. One silo makes the key (:meth:`HxgbSilo.create_keys`) and the
framework seals the secret context to each peer while the coordinator relays it.

Rounds (one :class:`HxgbSilo` per silo; the driver is :func:`train_in_process` here and
``fedsilo.protocols.hxgb.driver`` over the network)::

    bins          per feature, counts over a fixed log grid (:mod:`fedsilo.ml.grid_sketch`), plus
                  [sum y, rows, validation rows]  -> shared bin cuts, base score, fixed-point bits
    hist t.s      per node the tree grower asks for, [grad sums per slot, hess sums per slot]
                  of the silo's sampled rows in that node -> every silo runs the same grower step
    eval t        [validation log-loss sum, 0]  (only with early stopping) -> pooled loss

Why every silo grows the same tree: the shared grower (:class:`fedsilo.ml.tree.TreeGrower`) is
deterministic and every silo feeds it the same exact integers. Histogram subtraction needs to
know which child is smaller; local row counts differ between silos, so the pooled hessian sums
of the two children (part of the decrypted split) decide instead. Gradients are fixed-point
integers (:func:`gradient_bits`), so sums are exact and independent of the order of addition: the
federated model equals the centralized :class:`~fedsilo.ml.tree.PlainSource` model on the pooled
rows with the same cuts, bit for bit (``tests/protocols/hxgb/test_hxgb.py``). CKKS noise would
otherwise make sums approximate (~1e-8); exact rounding removes it, so there is no parity cost
beyond the fixed-point rounding of each row's gradient (2**-26 for 24,000 rows).

Two silos are refused (:func:`check_silo_count`): the sum minus one's own input is the other's.
What each party learns is in ``docs/leakage.md`` (section "Horizontal XGBoost").
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np
import tenseal as ts

from fedsilo import settings
from fedsilo.crypto import ckks
from fedsilo.errors import DataError, PolicyError, ProtocolError
from fedsilo.leakage import register_kind
from fedsilo.message import Message
from fedsilo.ml import grid_sketch
from fedsilo.ml.binning import BinMapper
from fedsilo.ml.boost_params import BoostParams
from fedsilo.ml.ensemble import TreeEnsemble
from fedsilo.ml.mathfn import sigmoid
from fedsilo.ml.tree import (
    HistLayout,
    NodeHistogram,
    NodeSplit,
    RowPartition,
    Tree,
    TreeGrower,
    base_margin,
    binned_go_left,
    logistic_gradients,
    plain_histogram,
    quantize,
)

__all__ = [
    "PUBLIC_CONTEXT",
    "SECRET_CONTEXT",
    "SUM",
    "UPDATE",
    "Aggregator",
    "HxgbParams",
    "HxgbSilo",
    "RoundStatus",
    "TrainingStats",
    "check_silo_count",
    "gradient_bits",
    "train_in_process",
]

SECRET_CONTEXT = register_kind(
    "hxgb.secret_context",
    reveals="the job's CKKS secret key, shared by the silos (sealed: the coordinator relays bytes "
    "it cannot open); nothing about any silo's data",
)
PUBLIC_CONTEXT = register_kind(
    "hxgb.public_context",
    reveals="to the coordinator: the job's CKKS parameters and public key, without the secret, "
    "relinearisation or Galois keys: enough to add ciphertexts, not to read them; nothing about "
    "any silo's data",
)
UPDATE = register_kind(
    "hxgb.update",
    reveals="to the coordinator: CKKS ciphertexts of one silo's grid counts and label sums, node "
    "gradient/hessian histograms or validation loss, unreadable without the silos' secret key; "
    "the round's vector length and node ids (the shape of the tree being grown)",
)
SUM = register_kind(
    "hxgb.sum",
    reveals="to every silo: sums over all silos of the round's vector: pooled per-bucket value "
    "counts, label count and row counts (bins); per-node, per-bin gradient and hessian sums "
    "(hist); validation log-loss (eval). With >= 3 silos never one other silo's values alone",
)

PHASES = ("bins", "hist", "eval")
#: values, longest vector one round may carry (``settings.HXGB_MAX_VECTOR_LENGTH``).
_MAX_VECTOR_LENGTH = settings.HXGB_MAX_VECTOR_LENGTH
#: a log-loss term is at most -log(1e-7) ~ 16.1 with probabilities clipped to [1e-7, 1 - 1e-7].
_LOSS_CLIP = 1e-7
_MAX_LOSS_PER_ROW = 17


# --- parameters ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class HxgbParams(BoostParams):
    """XGBoost's parameters (:class:`~fedsilo.ml.boost_params.BoostParams`, shared with the
    vertical model), minus SecureBoost's Paillier knobs.

    ``subsample``: each silo draws that fraction of its rows per tree (Bernoulli, seeded per silo
    and tree); ``colsample_bytree``: the same feature subset at every silo, seeded per tree.
    """

    LABEL: ClassVar[str] = "hxgb"

    def feature_mask(self, tree: int, n_features: int) -> np.ndarray | None:
        """This tree's column sample, the same at every silo (seeded by job seed and tree)."""
        if self.colsample_bytree >= 1:
            return None
        rng = np.random.default_rng([self.seed, tree, 1])
        k = max(1, int(self.colsample_bytree * n_features))
        mask = np.zeros(n_features, dtype=bool)
        mask[rng.choice(n_features, size=k, replace=False)] = True
        return mask


def check_silo_count(n_silos: int) -> None:
    """Horizontal XGBoost's use of the one rule, :func:`fedsilo.crypto.ckks.check_silo_count`."""
    ckks.check_silo_count(n_silos, protocol="horizontal XGBoost", summed="histograms")


def gradient_bits(n_rows: int) -> int:
    """Fractional bits of the fixed-point gradients for ``n_rows`` pooled rows.

    Why: a histogram slot sums up to ``n_rows`` values of magnitude <= 1, and CKKS sums round back
    exactly only below ``ckks.EXACT_LIMIT`` (2**42, so 41 bits of magnitude with a bit of
    margin); ``settings.HXGB_GRADIENT_BITS_MAX`` (30) is plenty where that allows it.
    """
    room = ckks.EXACT_LIMIT.bit_length() - 2 - int(n_rows).bit_length()
    return max(settings.HXGB_GRADIENT_BITS_MIN, min(settings.HXGB_GRADIENT_BITS_MAX, room))


def _eval_bits(n_valid: int) -> int:
    return max(0, min(30, 41 - int(_MAX_LOSS_PER_ROW * n_valid).bit_length()))


# --- the rounds on the wire ---------------------------------------------------------------------


@dataclass(frozen=True)
class _RoundId:
    """Which sum a message belongs to; every silo's contribution must carry the same one."""

    phase: str
    tree: int
    step: int
    length: int
    tag: str  # bins: digest of the feature names; hist: the nodes, e.g. "3,4"; eval: ""

    def meta(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> _RoundId:
        try:
            rid = cls(
                str(meta["phase"]),
                int(meta["tree"]),
                int(meta["step"]),
                int(meta["length"]),
                str(meta["tag"]),
            )
        except (KeyError, TypeError, ValueError):
            raise ProtocolError("hxgb message lacks phase, tree, step, length or tag") from None
        if rid.phase not in PHASES or min(rid.tree, rid.step) < 0 or len(rid.tag) > 4096:
            raise ProtocolError("hxgb message has a bad round id")
        if not 0 < rid.length <= _MAX_VECTOR_LENGTH:
            raise ProtocolError("hxgb message has a bad vector length")
        return rid


def _ciphertexts(msg: Message) -> list[bytes]:
    names = sorted(msg.blobs, key=lambda n: int(n[2:]) if n[2:].isdigit() else -1)
    if any(not n.startswith("ct") or not n[2:].isdigit() for n in names):
        raise ProtocolError(f"message '{msg.kind}' holds a blob that is not a ciphertext")
    return [msg.blobs[n] for n in names]


def _encrypt(ctx: ts.Context, rid: _RoundId, values: np.ndarray) -> Message:
    ints = np.asarray(values, dtype=np.int64)
    if ints.size != rid.length:
        raise ProtocolError("hxgb vector length does not match its round id")
    blobs = {f"ct{i}": c for i, c in enumerate(ckks.encrypt_vector(ctx, ints.astype(np.float64)))}
    return Message(UPDATE, meta=rid.meta(), blobs=blobs)


class Aggregator:
    """The coordinator's part: add the silos' ciphertexts of one round, without any secret key."""

    def __init__(self, public_context: bytes, n_silos: int) -> None:
        check_silo_count(n_silos)
        self.n_silos = n_silos
        self._ctx = ckks.load_context(public_context, require_secret=False)

    def sum(self, contributions: Sequence[Message]) -> Message:
        """One ``hxgb.sum`` from one ``hxgb.update`` per silo, all of the same round."""
        if len(contributions) != self.n_silos:
            raise ProtocolError(f"expected {self.n_silos} contributions, got {len(contributions)}")
        ids = {_RoundId.from_meta(m.expect(UPDATE).meta) for m in contributions}
        if len(ids) != 1:
            raise ProtocolError("contributions to one secure sum come from different rounds")
        rid = ids.pop()
        total = ckks.sum_ciphertexts(
            self._ctx, [_ciphertexts(m) for m in contributions], rid.length
        )
        meta = {**rid.meta(), "silos": len(contributions)}
        return Message(SUM, meta=meta, blobs={f"ct{i}": c for i, c in enumerate(total)})


# --- one silo -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoundStatus:
    """What a silo may release to the coordinator after a round: progress, no data.

    ``next`` is the phase the driver must run next ("hist", "eval" or "done"); every silo
    reports the same one. ``valid_loss`` is the pooled validation log-loss after an eval round.
    """

    tree: int
    next: str
    valid_loss: float | None = None

    def to_meta(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Data:
    """A silo's rows: float features (missing = NaN), 0/1 labels."""

    x: np.ndarray
    y: np.ndarray

    @classmethod
    def checked(cls, x: Any, y: Any, n_features: int, missing: float | None) -> _Data:
        xs, ys = np.array(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if xs.ndim != 2 or xs.shape[1] != n_features:
            raise DataError(f"expected a matrix with {n_features} feature columns")
        if ys.shape != (xs.shape[0],) or not np.isin(ys, (0.0, 1.0)).all():
            raise DataError("labels must be one 0/1 value per row")
        if np.isinf(xs).any():
            raise DataError("feature matrix holds infinite values")
        if missing is not None:
            xs[xs == missing] = np.nan
        return cls(xs, ys)


class HxgbSilo:
    """One silo's side of horizontal XGBoost: its rows, its copy of the key, the shared model."""

    def __init__(
        self,
        x: Any,
        y: Any,
        *,
        params: HxgbParams,
        party: str,
        n_silos: int,
        feature_names: Sequence[str] | None = None,
        x_valid: Any = None,
        y_valid: Any = None,
    ) -> None:
        check_silo_count(n_silos)
        n_features = np.shape(x)[1] if np.ndim(x) == 2 else 0
        self.feature_names = list(feature_names or [f"x{i}" for i in range(n_features)])
        self.params, self.party, self.n_silos = params, party, n_silos
        self._train = _Data.checked(x, y, len(self.feature_names), params.missing)
        self._valid = (
            _Data.checked(x_valid, y_valid, len(self.feature_names), params.missing)
            if x_valid is not None
            else None
        )
        if len(self._train.y) < settings.DEFAULT_MIN_ROWS_PER_STATISTIC:
            raise PolicyError("too few rows to take part in a secure sum")
        self._salt = int.from_bytes(hashlib.sha256(party.encode()).digest()[:4], "big")
        self._ctx: ts.Context | None = None
        self._expected: _RoundId | None = None
        self._phase = "bins"
        self.trees: list[Tree] = []
        self._best: tuple[int, float] | None = None  # (trees, pooled validation loss)

    # --- keys ------------------------------------------------------------------------------------
    def create_keys(self) -> tuple[Message, bytes]:
        """Make the job's CKKS key: the message sealed to each peer, the coordinator's context."""
        self._ctx = ckks.make_context()
        secret = Message(SECRET_CONTEXT, blobs={"context": ckks.secret_context_bytes(self._ctx)})
        return secret, ckks.public_context_bytes(self._ctx)

    def accept_keys(self, msg: Message) -> None:
        """Take the secret context a peer made (the framework has unsealed it)."""
        blob = msg.expect(SECRET_CONTEXT).blob("context")
        self._ctx = ckks.load_context(blob, require_secret=True)

    def _context(self) -> ts.Context:
        if self._ctx is None:
            raise ProtocolError("hxgb step before the CKKS key was shared")
        return self._ctx

    def _open(self, msg: Message, phase: str) -> tuple[_RoundId, np.ndarray]:
        """Check a sum is the one this silo waits for; decrypt it to exact integers."""
        if self._phase != phase:
            raise ProtocolError(f"hxgb expected a '{self._phase}' round, got '{phase}'")
        rid = _RoundId.from_meta(msg.expect(SUM).meta)
        if msg.meta.get("silos") != self.n_silos:
            raise ProtocolError(
                f"sum over {msg.meta.get('silos')!r} silos; the job has {self.n_silos}"
            )
        if rid.phase != phase or rid != self._expected:
            raise ProtocolError("hxgb sum is for another round than this silo's")
        plain = ckks.decrypt_vector(self._context(), _ciphertexts(msg), rid.length)
        exact = ckks.round_exact(plain)
        self._expected = None  # one sum per update: a replay is refused
        return rid, exact

    def _send(self, rid: _RoundId, values: np.ndarray) -> Message:
        self._expected = rid
        return _encrypt(self._context(), rid, values)

    # --- bins ------------------------------------------------------------------------------------
    def binning_update(self) -> Message:
        """Grid counts of every feature and ``[sum y, rows, validation rows]``, encrypted."""
        if self._phase != "bins":
            raise ProtocolError("hxgb binning round out of order")
        counts = grid_sketch.bucket_counts(self._train.x).ravel()
        n_valid = 0 if self._valid is None else len(self._valid.y)
        extra = [self._train.y.sum(), len(self._train.y), n_valid]
        values = np.concatenate([counts, extra]).astype(np.int64)
        digest = hashlib.sha256(json.dumps(self.feature_names).encode()).hexdigest()[:32]
        return self._send(_RoundId("bins", 0, 0, values.size, digest), values)

    def accept_binning(self, msg: Message) -> RoundStatus:
        """Pooled counts -> the shared cuts; pooled labels -> base score; then the first tree."""
        _, pooled = self._open(msg, "bins")
        n_feat = len(self.feature_names)
        counts = pooled[: n_feat * grid_sketch.BUCKETS].reshape(n_feat, grid_sketch.BUCKETS)
        positives, self.n_rows, self.n_valid = (int(v) for v in pooled[-3:])
        if self.n_rows < settings.DEFAULT_MIN_ROWS_PER_STATISTIC * self.n_silos:
            raise PolicyError("pooled row count is below the release minimum")
        if self.params.early_stopping_rounds and self.n_valid == 0:
            raise DataError("early stopping needs validation rows at one silo at least")
        self.bins = _shared_mapper(counts, self.params.max_bin, self.feature_names)
        score = self.params.base_score
        self.base_margin = base_margin(
            np.zeros(0), positives / self.n_rows if score is None else score
        )
        self.bits = gradient_bits(self.n_rows)
        self._binned = self.bins.transform(self._train.x)
        self._margin = np.full(len(self._train.y), self.base_margin)
        if self._valid is not None:
            self._binned_valid = self.bins.transform(self._valid.x)
            self._margin_valid = np.full(len(self._valid.y), self.base_margin)
        self._start_tree()
        return RoundStatus(tree=0, next="hist")

    # --- trees -----------------------------------------------------------------------------------
    def _start_tree(self) -> None:
        t = len(self.trees)
        g, h = logistic_gradients(self._margin, self._train.y)
        self._grad, self._hess = quantize(g, self.bits), quantize(h, self.bits)
        sampled = None
        if self.params.subsample < 1:
            rng = np.random.default_rng([self.params.seed, t, self._salt])
            sampled = rng.random(len(self._train.y)) < self.params.subsample
        self._rows = RowPartition(len(self._train.y), sampled)
        self._layout = HistLayout.concat(self.bins.slots)
        self._grower = TreeGrower(
            self._layout,
            self.params.tree_params(),
            scale=math.ldexp(1.0, -self.bits),
            feature_mask=self.params.feature_mask(t, len(self.feature_names)),
        )
        self._step = 0
        self._phase = "hist"

    def histogram_update(self) -> Message:
        """Gradient and hessian sums of this silo's sampled rows in each node the grower needs."""
        if self._phase != "hist":
            raise ProtocolError("hxgb histogram round out of order")
        parts = []
        for node in self._grower.needs():
            rows = self._rows.sampled_rows(node)
            g, h = plain_histogram(self._binned, rows, self._grad, self._hess, self._layout)
            parts += [g, h]
        values = np.concatenate(parts)
        tag = ",".join(str(n) for n in self._grower.needs())
        return self._send(_RoundId("hist", len(self.trees), self._step, values.size, tag), values)

    def accept_histograms(self, msg: Message) -> RoundStatus:
        """Pooled histograms -> the grower's splits -> route local rows; finish the tree if done."""
        _, pooled = self._open(msg, "hist")
        splits = self._grower.add_histograms(self._node_histograms(pooled))
        self._step += 1
        if splits:
            self._apply(splits)
        if not self._grower.done:
            self._grower.add_partition(_pooled_sizes(splits))
        if not self._grower.done:
            return RoundStatus(tree=len(self.trees), next="hist")
        return self._finish_tree()

    def _node_histograms(self, pooled: np.ndarray) -> dict[int, NodeHistogram]:
        n_slots, first = self._layout.n_slots, int(self._layout.ptr[1])
        out = {}
        for i, node in enumerate(self._grower.needs()):
            g = pooled[2 * i * n_slots : (2 * i + 1) * n_slots]
            h = pooled[(2 * i + 1) * n_slots : (2 * i + 2) * n_slots]
            # every row is in exactly one slot of feature 0 (a bin or the missing slot)
            out[node] = NodeHistogram(g, h, int(g[:first].sum()), int(h[:first].sum()))
        return out

    def _apply(self, splits: Mapping[int, NodeSplit]) -> None:
        n_bins = self.bins.n_bins
        for node, ns in splits.items():
            rows = self._rows.rows(node)
            f = ns.split.feature
            b = self._binned[rows, f].astype(np.int64)
            left = np.where(b == n_bins[f], ns.split.default_left, b <= ns.split.bin)
            self._rows.apply(ns, rows, left)

    def _finish_tree(self) -> RoundStatus:
        tree = self._grower.tree
        self.trees.append(tree)
        self._margin += tree.leaf_values()[self._rows.positions]
        if self._valid is not None:
            go_left = binned_go_left(self._binned_valid, tree, self.bins.n_bins)
            self._margin_valid += tree.leaf_values()[tree.leaf_index(len(self._valid.y), go_left)]
        if self.params.early_stopping_rounds:
            self._phase = "eval"
            return RoundStatus(tree=len(self.trees) - 1, next="eval")
        return self._next_tree()

    def _next_tree(self) -> RoundStatus:
        if len(self.trees) >= self.params.n_estimators:
            self._phase = "done"
            return RoundStatus(tree=len(self.trees) - 1, next="done")
        self._start_tree()
        return RoundStatus(tree=len(self.trees), next="hist")

    # --- early stopping --------------------------------------------------------------------------
    def eval_update(self) -> Message:
        """This silo's validation log-loss sum (fixed point) after the latest tree, encrypted."""
        if self._phase != "eval":
            raise ProtocolError("hxgb eval round out of order")
        total = 0
        if self._valid is not None:
            p = np.clip(sigmoid(self._margin_valid), _LOSS_CLIP, 1 - _LOSS_CLIP)
            y = self._valid.y
            loss = -(y * np.log(p) + (1 - y) * np.log(1 - p))
            total = int(quantize(loss, _eval_bits(self.n_valid)).sum())
        rid = _RoundId("eval", len(self.trees) - 1, 0, 2, "")
        return self._send(rid, np.array([total, 0]))

    def accept_eval(self, msg: Message) -> RoundStatus:
        """Pooled validation loss -> keep the best iteration; stop when it stopped improving."""
        _, pooled = self._open(msg, "eval")
        loss = math.ldexp(float(pooled[0]), -_eval_bits(self.n_valid)) / self.n_valid
        if self._best is None or loss < self._best[1]:
            self._best = (len(self.trees), loss)
        patience = self.params.early_stopping_rounds or 0
        if len(self.trees) - self._best[0] >= patience:
            self._phase = "done"
            return RoundStatus(tree=len(self.trees) - 1, next="done", valid_loss=loss)
        status = self._next_tree()
        return RoundStatus(tree=status.tree, next=status.next, valid_loss=loss)

    # --- result ----------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self._phase == "done"

    def model(self) -> TreeEnsemble:
        """The shared model (the same at every silo), cut at the best iteration."""
        if not self.done:
            raise ProtocolError("hxgb model requested before training finished")
        n_trees = self._best[0] if self._best is not None else len(self.trees)
        info: dict[str, Any] = {
            "kind": "hxgb",
            "silos": self.n_silos,
            "rows": self.n_rows,
            "trees_grown": len(self.trees),
        }
        if self._best is not None:
            info.update(best_iteration=self._best[0] - 1, best_valid_loss=self._best[1])
        return TreeEnsemble(
            bins=self.bins,
            trees=list(self.trees[:n_trees]),
            base_margin=self.base_margin,
            missing=self.params.missing,
            params=self.params.to_dict(),
            info=info,
        )


def _pooled_sizes(splits: Mapping[int, NodeSplit]) -> dict[int, tuple[int, int]]:
    """Children's "sizes" for histogram subtraction: pooled hessian sums, the same at every silo.

    The grower only compares the two to build the smaller child's histogram and derive the other
    (exact with integer sums); local row counts would make silos choose differently.
    """
    return {n: (int(s.split.left_hess), int(s.split.right_hess)) for n, s in splits.items()}


def _shared_mapper(counts: np.ndarray, max_bin: int, names: Sequence[str]) -> BinMapper:
    """The shared :class:`BinMapper` from pooled grid counts.

    Cuts are grid edges plus a last sentinel of float32's largest value (every finite value lies
    below it, so a split at the last bin means "all but missing"); ``min_values`` is its negative
    (nothing lies below, so bin ``-1`` means "only missing"). Neither is taken from any data.
    """
    big = float(np.finfo(np.float32).max)
    edges = grid_sketch.edges_from_counts(counts, max_bin)
    cuts = tuple(np.append(e.astype(np.float64), big) for e in edges)
    return BinMapper(cuts=cuts, min_values=np.full(len(cuts), -big), feature_names=tuple(names))


# --- one process, for tests and benchmarks ------------------------------------------------------


@dataclass
class TrainingStats:
    """What a whole run cost: rounds, bytes through the relay, seconds per party kind."""

    rounds: int = 0
    bytes_relayed: int = 0
    silo_seconds: float = 0.0
    aggregator_seconds: float = 0.0
    valid_losses: list[float] = field(default_factory=list)


def train_in_process(silos: Sequence[HxgbSilo]) -> tuple[TreeEnsemble, TrainingStats]:
    """Run the whole protocol between ``silos`` in this process, as the coordinator would, in
    the coordinator's order (:mod:`fedsilo.protocols.hxgb.conversation`).

    Every message is encoded to bytes as on the wire (sealing aside), which is what
    ``bytes_relayed`` counts: every update to the coordinator, every sum back to each silo, the
    keys once. Returns the model (every silo's digest checked equal) and the run's figures.
    """
    from fedsilo.protocols.hxgb.local import run_in_process  # it builds on this module

    return run_in_process(silos)
