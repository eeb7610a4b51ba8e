"""SecureBoost: vertical federated XGBoost with Paillier, as pure party classes.

Roles (``docs/leakage.md`` lists what each message reveals)
    :class:`ActiveParty` — the label holder: labels, its own binned features, the Paillier key
    pair. It computes gradients, encrypts them, decrypts the per-bin sums the passive parties
    return, finds every split (:class:`fedsilo.ml.tree.TreeGrower`), keeps tree shapes and leaf
    values. :class:`PassiveParty` — holds features only: bins them locally, sums ciphertexts per
    (node, feature, bin) (:mod:`fedsilo.ml.secure_hist`), and keeps the thresholds of the splits
    it owns in its own :class:`fedsilo.ml.sgb_model.SplitTable`.

Exchange
    Parties exchange :class:`fedsilo.message.Message` objects only, so a silo step can relay
    them unchanged. ``ActiveParty.step(inbox) -> outbox`` is resumable (a generator underneath):
    the caller delivers each ``outbox[party]`` to ``PassiveParty.handle`` and feeds the replies
    back as the next ``inbox``, until ``ActiveParty.done``. :func:`run_in_process` is that loop
    for tests and benchmarks (through the byte codec, counting relayed bytes).

Exactness
    Gradients are fixed-point integers (``2**-precision_bits``) in every mode, bin sums are exact
    (integer homomorphic sums, integer plaintext sums), so with no passive party (the
    centralized mode, no encryption, same code) the trees are identical and scores agree to
    float rounding.

Rows: all parties hold the same aligned rows in the same order (the PSI alignment). The label
holder names the training rows at setup; the others (if any) are its validation rows for early
stopping, predicted federatedly after each tree.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from fedsilo import settings
from fedsilo.crypto.paillier import PrivateKey, PublicKey, generate_keypair
from fedsilo.errors import ConfigError, ProtocolError
from fedsilo.leakage import register_kind
from fedsilo.message import Message, decode, encode
from fedsilo.ml import secure_hist
from fedsilo.ml.binning import BinMapper, fit_bins
from fedsilo.ml.secure_hist import EncryptedHistogram, PackingSpec
from fedsilo.ml.sgb_model import FORMAT, FeatureRef, SecureBoostModel, SplitTable
from fedsilo.ml.tree import (
    HistLayout,
    NodeHistogram,
    NodeSplit,
    RowPartition,
    Tree,
    TreeGrower,
    TreeParams,
    base_margin,
    logistic_gradients,
    plain_histogram,
    precision_bits,
    quantize,
    sigmoid,
)

__all__ = [
    "ActiveParty",
    "PassiveParty",
    "SecureBoostParams",
    "predict_in_process",
    "read_routes",
    "routes_message",
    "run_in_process",
]

# --- message kinds -------------------------------------------------------------------------------

SETUP = register_kind(
    "sgb.setup",
    reveals="the label holder's Paillier public key, the training parameters and which aligned "
    "rows are training rows (the others are its validation rows)",
)
LAYOUT = register_kind(
    "sgb.layout",
    reveals="how many bins each of the passive party's features has, and their names only if "
    "its policy allows",
)
GRADIENTS = register_kind(
    "sgb.gradients",
    reveals="Paillier ciphertexts of each sampled row's gradient and hessian (nothing, under "
    "DCR), which rows the tree samples and which of the recipient's features it may use",
)
HIST_REQUEST = register_kind(
    "sgb.hist_request",
    reveals="the instance space of each node to be split: which training rows reach it",
)
HISTOGRAMS = register_kind(
    "sgb.histograms",
    reveals="to the label holder, who decrypts them: per node and bin of the sender's features "
    "the sums of gradients and hessians; which bins are empty and which is the fullest",
)
SPLIT = register_kind(
    "sgb.split",
    reveals="that the recipient owns a node's split, which of its features and bins won, the "
    "default direction of missing values, and the node's rows",
)
SPLIT_REPLY = register_kind(
    "sgb.split_reply",
    reveals="which rows of the node go left (the instance spaces of the children)",
)
ROUTE_REQUEST = register_kind(
    "sgb.route_request",
    reveals="which aligned rows are being predicted and for which trees",
)
ROUTES = register_kind(
    "sgb.routes",
    reveals="for every requested row, the side it takes at every node the sender owns (all of "
    "them, not only those on the row's path)",
)
FINISH = register_kind("sgb.finish", reveals="how many trees the final model keeps")


# --- parameters ----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SecureBoostParams:
    """Training parameters, with XGBoost's names and defaults where XGBoost has them.

    ``missing=None`` means NaN (JSON has no NaN). ``early_stopping_rounds`` needs validation
    rows at the label holder. ``insecure_min_key_bits`` lowers the key-size floor (tests only).
    """

    n_estimators: int = 100
    max_depth: int = 6
    learning_rate: float = 0.3
    reg_lambda: float = 1.0
    gamma: float = 0.0
    min_child_weight: float = 1.0
    subsample: float = 1.0
    colsample_bytree: float = 1.0
    max_bin: int = 256
    base_score: float | None = None
    missing: float | None = None
    early_stopping_rounds: int | None = None
    seed: int = 0
    key_bits: int = settings.PAILLIER_KEY_BITS
    insecure_min_key_bits: int | None = None
    precision_bits: int = settings.SECUREBOOST_PRECISION_BITS
    binning: str = "xgboost"

    def validate(self) -> None:
        checks = [
            (1 <= self.n_estimators <= settings.SECUREBOOST_MAX_TREES, "n_estimators"),
            (1 <= self.max_depth <= 16, "max_depth"),
            (0 < self.learning_rate <= 1, "learning_rate"),
            (self.reg_lambda >= 0 and self.gamma >= 0, "reg_lambda/gamma"),
            (self.min_child_weight >= 0, "min_child_weight"),
            (0 < self.subsample <= 1 and 0 < self.colsample_bytree <= 1, "subsample/colsample"),
            (2 <= self.max_bin <= settings.SECUREBOOST_MAX_BIN, "max_bin"),
            (self.base_score is None or 0 < self.base_score < 1, "base_score"),
            (
                self.early_stopping_rounds is None or self.early_stopping_rounds >= 1,
                "early_stopping_rounds",
            ),
            (8 <= self.precision_bits <= 40, "precision_bits"),
            (self.binning in ("xgboost", "quantile"), "binning"),
        ]
        bad = [name for ok, name in checks if not ok]
        if bad:
            raise ConfigError(f"invalid SecureBoost parameter(s): {', '.join(bad)}")

    def tree_params(self) -> TreeParams:
        return TreeParams(
            max_depth=self.max_depth,
            learning_rate=self.learning_rate,
            reg_lambda=self.reg_lambda,
            gamma=self.gamma,
            min_child_weight=self.min_child_weight,
        )

    @property
    def missing_value(self) -> float:
        return float("nan") if self.missing is None else float(self.missing)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SecureBoostParams:
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown SecureBoost parameter(s): {', '.join(sorted(unknown))}")
        try:
            params = cls(**dict(d))
        except TypeError as exc:
            raise ConfigError(f"bad SecureBoost parameters: {exc}") from None
        params.validate()
        return params


# --- ragged arrays in messages -------------------------------------------------------------------


def _ragged(parts: Sequence[np.ndarray], dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
    flat = np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)
    return offsets, flat


def _unragged(offsets: np.ndarray, flat: np.ndarray, count: int) -> list[np.ndarray]:
    if (
        len(offsets) != count + 1
        or offsets[0] != 0
        or offsets[-1] != len(flat)
        or np.any(np.diff(offsets) < 0)
    ):
        raise ProtocolError("ragged array offsets are inconsistent")
    return [flat[offsets[i] : offsets[i + 1]] for i in range(count)]


def _check_rows(rows: np.ndarray, n: int) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) and (rows.min() < 0 or rows.max() >= n):
        raise ProtocolError("row index out of range")
    return rows


def _pack_bits(masks: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return _ragged([np.packbits(m.astype(bool)) for m in masks], np.uint8)


def _unpack_bits(offsets: np.ndarray, flat: np.ndarray, lengths: Sequence[int]) -> list[np.ndarray]:
    parts = _unragged(offsets, flat, len(lengths))
    out = []
    for part, n in zip(parts, lengths, strict=True):
        if len(part) != (n + 7) // 8:
            raise ProtocolError("bit mask has the wrong length")
        out.append(np.unpackbits(part, count=n).astype(bool))
    return out


# --- the passive party ---------------------------------------------------------------------------


class PassiveParty:
    """A silo holding features only (module docstring); answers messages via :meth:`handle`."""

    def __init__(
        self,
        name: str,
        x: np.ndarray,
        *,
        feature_names: Sequence[str] | None = None,
        reveal_feature_names: bool = False,
        min_node_rows: int = 0,
        insecure_min_key_bits: int | None = None,
    ) -> None:
        self.name = name
        #: nodes with fewer rows get no histogram from this party (its features cannot split
        #: them): a policy knob that bounds what bin sums reveal, at the price of exactness
        self.min_node_rows = int(min_node_rows)
        self.x = np.asarray(x, dtype=np.float64)
        self.feature_names = list(feature_names or [f"x{i}" for i in range(self.x.shape[1])])
        self.reveal_feature_names = reveal_feature_names
        self.insecure_min_key_bits = insecure_min_key_bits
        self.splits = SplitTable()
        self.stats: dict[int, dict[str, float]] = {}
        self._bins: np.ndarray | None = None
        self._mapper: BinMapper | None = None
        self._public: PublicKey | None = None
        self._spec: PackingSpec | None = None
        self._tree = -1
        self._cts: np.ndarray = np.zeros((0, 0), np.uint8)
        self._ct_pos: np.ndarray = np.zeros(0, np.int64)
        self._features: np.ndarray | None = None

    def handle(self, msg: Message) -> Message | None:
        """Answer one message from the label holder (None when no answer is due)."""
        handlers: dict[str, Callable[[Message], Message | None]] = {
            SETUP: self._on_setup,
            GRADIENTS: self._on_gradients,
            HIST_REQUEST: self._on_hist_request,
            SPLIT: self._on_split,
            ROUTE_REQUEST: self._on_route_request,
            FINISH: self._on_finish,
        }
        handler = handlers.get(msg.kind)
        if handler is None:
            raise ProtocolError(f"SecureBoost passive party cannot handle '{msg.kind}'")
        if msg.kind != SETUP and self._bins is None:
            raise ProtocolError(f"'{msg.kind}' before sgb.setup")
        return handler(msg)

    def model_part(self) -> dict[str, Any]:
        """What this silo stores: its split table (thresholds), as JSON."""
        return {
            "format": FORMAT,
            "party": self.name,
            "feature_names": self.feature_names,
            **self.splits.to_dict(),
        }

    # -- handlers --

    def _on_setup(self, msg: Message) -> Message:
        meta = msg.meta
        try:
            self._public = PublicKey.from_n(
                int(str(meta["n"]), 16), insecure_min_bits=self.insecure_min_key_bits
            )
            params = SecureBoostParams.from_dict(meta["params"])
        except (KeyError, ValueError) as exc:
            raise ProtocolError(f"bad sgb.setup: {exc}") from None
        self._spec = PackingSpec.from_meta(meta["packing"], self._public.bits)
        train = _check_rows(msg.array("train_rows"), len(self.x))
        x_train = self.x[train]
        self._mapper = fit_bins(
            x_train,
            max_bin=params.max_bin,
            method=params.binning,
            feature_names=self.feature_names,
            missing=params.missing_value,
        )
        self._bins = self._mapper.transform(x_train, params.missing_value)
        names = self.feature_names if self.reveal_feature_names else None
        return Message(
            LAYOUT, meta={"names": names}, arrays={"slots": self._mapper.slots.astype(np.int32)}
        )

    def _on_gradients(self, msg: Message) -> Message:
        assert self._public is not None and self._bins is not None
        tree = int(msg.meta.get("tree", -1))
        if tree != self._tree + 1:
            raise ProtocolError("sgb.gradients for an unexpected tree")
        self._tree = tree
        rows = _check_rows(msg.array("rows"), len(self._bins))
        width = self._public.ciphertext_bytes
        blob = msg.blob("ciphertexts")
        if len(blob) != len(rows) * width:
            raise ProtocolError("sgb.gradients: ciphertext blob does not match the rows")
        self._cts = np.frombuffer(blob, dtype=np.uint8).reshape(len(rows), width)
        self._ct_pos = np.full(len(self._bins), -1, dtype=np.int64)
        self._ct_pos[rows] = np.arange(len(rows))
        features = msg.array("features").astype(bool)
        if len(features) != self._bins.shape[1]:
            raise ProtocolError("sgb.gradients: feature mask has the wrong length")
        self._features = features
        self.stats[tree] = {"hist_s": 0.0}
        return self._histograms([0], [rows])

    def _on_hist_request(self, msg: Message) -> Message:
        self._check_tree(msg)
        nodes = msg.array("nodes")
        parts = _unragged(msg.array("offsets"), msg.array("rows"), len(nodes))
        return self._histograms(nodes.tolist(), parts)

    def _histograms(self, nodes: list[int], parts: list[np.ndarray]) -> Message:
        assert self._bins is not None and self._mapper is not None and self._public is not None
        assert self._spec is not None
        start = time.perf_counter()
        layout = HistLayout.concat(self._mapper.slots)
        hists = []
        for rows in parts:
            rows = _check_rows(rows, len(self._bins))
            pos = self._ct_pos[rows]
            if np.any(pos < 0):
                raise ProtocolError("histogram requested over rows without gradients")
            if len(rows) < self.min_node_rows:
                hists.append(_withheld(layout))
                continue
            hists.append(
                secure_hist.encrypted_histogram(
                    self._public,
                    self._spec,
                    self._cts[pos],
                    self._bins[rows],
                    layout,
                    self._features,
                )
            )
        self.stats[self._tree]["hist_s"] += time.perf_counter() - start
        return _histograms_message(self._tree, nodes, hists, self._public.ciphertext_bytes)

    def _on_split(self, msg: Message) -> Message:
        assert self._bins is not None and self._mapper is not None
        tree = self._check_tree(msg)
        nodes = msg.array("nodes").tolist()
        feats, bins_ = msg.array("features").tolist(), msg.array("bins").tolist()
        dls = msg.array("default_left").astype(bool).tolist()
        parts = _unragged(msg.array("offsets"), msg.array("rows"), len(nodes))
        n_bins = self._mapper.n_bins
        masks = []
        for node, f, b, dl, rows in zip(nodes, feats, bins_, dls, parts, strict=True):
            if not 0 <= f < len(n_bins) or not -1 <= b < n_bins[f]:
                raise ProtocolError("sgb.split names a feature or bin that does not exist")
            rows = _check_rows(rows, len(self._bins))
            col = self._bins[rows, f].astype(np.int64)
            masks.append(np.where(col == n_bins[f], dl, col <= b))
            self.splits.add(tree, node, f, self._mapper.threshold(f, b), dl)
        offsets, bits = _pack_bits(masks)
        return Message(
            SPLIT_REPLY,
            meta={"tree": tree},
            arrays={"nodes": np.asarray(nodes, np.int32), "offsets": offsets, "bits": bits},
        )

    def _on_route_request(self, msg: Message) -> Message:
        rows = _check_rows(msg.array("rows"), len(self.x))
        trees = set(msg.array("trees").tolist())
        return routes_message_from(self.splits.route(self.x[rows], trees), len(rows))

    def _on_finish(self, msg: Message) -> None:
        self.splits.truncate(int(msg.meta.get("n_trees", 0)))
        self._cts = np.zeros((0, 0), np.uint8)
        return None

    def _check_tree(self, msg: Message) -> int:
        if int(msg.meta.get("tree", -1)) != self._tree:
            raise ProtocolError(f"'{msg.kind}' for a tree that is not being grown")
        return self._tree


def _withheld(layout: HistLayout) -> EncryptedHistogram:
    """An empty answer: no slot present, none omitted; the label holder reads zeros."""
    return EncryptedHistogram(
        present=np.zeros(layout.n_slots, bool),
        omitted=np.full(layout.n_features, -1, np.int64),
        packed=b"",
    )


def _histograms_message(
    tree: int, nodes: list[int], hists: list[EncryptedHistogram], width: int
) -> Message:
    present_off, present = _ragged([h.present for h in hists], bool)
    omitted_off, omitted = _ragged([h.omitted for h in hists], np.int64)
    counts = np.asarray([len(h.packed) // width for h in hists], dtype=np.int64)
    return Message(
        HISTOGRAMS,
        meta={"tree": tree},
        arrays={
            "nodes": np.asarray(nodes, np.int32),
            "present_offsets": present_off,
            "present": present,
            "omitted_offsets": omitted_off,
            "omitted": omitted,
            "packed_counts": counts,
        },
        blobs={"packed": b"".join(h.packed for h in hists)},
    )


def _read_histograms(msg: Message, width: int) -> dict[int, EncryptedHistogram]:
    msg.expect(HISTOGRAMS)
    nodes = msg.array("nodes").tolist()
    present = _unragged(msg.array("present_offsets"), msg.array("present"), len(nodes))
    omitted = _unragged(msg.array("omitted_offsets"), msg.array("omitted"), len(nodes))
    counts = msg.array("packed_counts").astype(np.int64)
    blob = msg.blob("packed")
    if (
        len(counts) != len(nodes)
        or counts.min(initial=0) < 0
        or int(counts.sum()) * width != len(blob)
    ):
        raise ProtocolError("sgb.histograms: packed ciphertexts do not match their counts")
    ends = np.cumsum(counts) * width
    starts = ends - counts * width
    return {
        node: EncryptedHistogram(present[i].astype(bool), omitted[i], blob[starts[i] : ends[i]])
        for i, node in enumerate(nodes)
    }


def routes_message_from(routes: Mapping[tuple[int, int], np.ndarray], n_rows: int) -> Message:
    keys = np.asarray(list(routes.keys()), dtype=np.int32).reshape(-1, 2)
    offsets, bits = _pack_bits(list(routes.values()))
    return Message(
        ROUTES, meta={"n_rows": n_rows}, arrays={"keys": keys, "offsets": offsets, "bits": bits}
    )


def routes_message(table: SplitTable, x: np.ndarray, trees: set[int] | None = None) -> Message:
    """An owner's answer for prediction: the side each row of ``x`` takes at its nodes."""
    return routes_message_from(table.route(x, trees), len(x))


def read_routes(
    msg: Message, n_rows: int, kind: str | None = ROUTES
) -> dict[tuple[int, int], np.ndarray]:
    """Left masks from a :func:`routes_message` (``kind=None``: the relay renamed it)."""
    if kind is not None:
        msg.expect(kind)
    keys = msg.array("keys").reshape(-1, 2).tolist()
    masks = _unpack_bits(msg.array("offsets"), msg.array("bits"), [n_rows] * len(keys))
    return {(int(t), int(n)): m for (t, n), m in zip(keys, masks, strict=True)}


# --- the active party ----------------------------------------------------------------------------


Outbox = dict[str, Message]
Protocol = Generator[Outbox, Mapping[str, Message], None]


@dataclass
class _TreeStats:
    encrypt_s: float = 0.0
    decrypt_s: float = 0.0
    local_s: float = 0.0
    rounds: int = 0


class ActiveParty:
    """The label holder (module docstring). Drive it with :meth:`step` until :attr:`done`."""

    def __init__(
        self,
        name: str,
        x: np.ndarray,
        y: np.ndarray,
        *,
        params: SecureBoostParams,
        passives: Sequence[str] = (),
        feature_names: Sequence[str] | None = None,
        valid_rows: np.ndarray | None = None,
        train_rows: np.ndarray | None = None,
        keypair: tuple[PublicKey, PrivateKey] | None = None,
    ) -> None:
        params.validate()
        self.name, self.params, self.passives = name, params, list(passives)
        self.x = np.asarray(x, dtype=np.float64)
        self.y = np.asarray(y, dtype=np.float64)
        if params.early_stopping_rounds and (valid_rows is None or len(valid_rows) == 0):
            raise ConfigError("early stopping needs validation rows at the label holder")
        self.valid_rows = np.asarray([] if valid_rows is None else valid_rows, dtype=np.int64)
        if train_rows is None:  # aligned order; XGBoost's quantile sketch depends on row order
            train_rows = np.setdiff1d(np.arange(len(self.y)), self.valid_rows)
        self.train_rows = _check_rows(train_rows, len(self.y))
        if len(self.train_rows) == 0 or np.intersect1d(self.train_rows, self.valid_rows).size:
            raise ConfigError("training rows must be non-empty and disjoint from validation rows")
        names = list(feature_names or [f"x{i}" for i in range(self.x.shape[1])])
        x_train = self.x[self.train_rows]
        self.mapper = fit_bins(
            x_train,
            max_bin=params.max_bin,
            method=params.binning,
            feature_names=names,
            missing=params.missing_value,
        )
        self.bins = self.mapper.transform(x_train, params.missing_value)
        self.y_train = self.y[self.train_rows]
        self.bits = precision_bits(len(self.train_rows), params.precision_bits)
        self.base = base_margin(self.y_train, params.base_score)
        self.margin = np.full(len(self.train_rows), self.base)
        self.valid_margin = np.full(len(self.valid_rows), self.base)
        self.features = [FeatureRef(name, i, n) for i, n in enumerate(names)]
        self.layouts: dict[str, HistLayout] = {name: HistLayout.concat(self.mapper.slots)}
        self.key: PrivateKey | None = None
        self.spec: PackingSpec | None = None
        self._stock: secure_hist.ObfuscatorStock | None = None
        if self.passives:
            pub, self.key = keypair or generate_keypair(
                params.key_bits, insecure_min_bits=params.insecure_min_key_bits
            )
            self.spec = PackingSpec.for_job(pub.bits, len(self.train_rows), self.bits)
            self._stock = secure_hist.ObfuscatorStock(self.key)
        self.model = SecureBoostModel(
            params=params.to_dict(),
            base_margin=self.base,
            features=self.features,
            trees=[],
            own_party=name,
            own_splits=SplitTable(),
        )
        self.tree_stats: list[_TreeStats] = []
        self.valid_loss: list[float] = []
        self._gen: Protocol = self._protocol()
        self._started = False
        self.done = False

    # -- driving --

    def step(self, inbox: Mapping[str, Message] | None = None) -> Outbox:
        """Advance until messages must go out; returns them (``{}`` once :attr:`done`)."""
        try:
            if not self._started:
                self._started = True
                return next(self._gen)
            return self._gen.send(dict(inbox or {}))
        except StopIteration:
            self.done = True
            return {}

    def _protocol(self) -> Protocol:
        if self.passives:
            replies = yield {p: self._setup_message() for p in self.passives}
            self._read_layouts(replies)
        layout = HistLayout.concat(*(self.layouts[p].slots for p in [self.name, *self.passives]))
        best, best_loss = 0, math.inf
        for t in range(self.params.n_estimators):
            tree = yield from self._grow_tree(t, layout)
            self.model.trees.append(tree)
            if len(self.valid_rows):
                loss = yield from self._validate(t, tree)
                if loss < best_loss:
                    best, best_loss = t, loss
                elif (
                    self.params.early_stopping_rounds
                    and t - best >= self.params.early_stopping_rounds
                ):
                    break
        if self.params.early_stopping_rounds:
            self.model.trees = self.model.trees[: best + 1]
            self.model.own_splits.truncate(best + 1)
            self.model.metrics = {"best_iteration": best, "valid_logloss": best_loss}
        if self.passives:
            yield {p: Message(FINISH, meta={"n_trees": self.model.n_trees}) for p in self.passives}

    def _setup_message(self) -> Message:
        assert self.key is not None and self.spec is not None
        meta = {
            "n": format(int(self.key.public.n), "x"),
            "packing": self.spec.to_meta(),
            "params": {**self.params.to_dict(), "insecure_min_key_bits": None},
        }
        return Message(SETUP, meta=meta, arrays={"train_rows": self.train_rows.astype(np.uint32)})

    def _read_layouts(self, replies: Mapping[str, Message]) -> None:
        for p in self.passives:
            msg = _reply(replies, p, LAYOUT)
            slots = msg.array("slots").astype(np.int64)
            if len(slots) == 0 or slots.min() < 2 or slots.max() > settings.SECUREBOOST_MAX_BIN + 1:
                raise ProtocolError(f"party '{p}' sent an impossible histogram layout")
            names = msg.meta.get("names")
            shown = (
                [str(n) for n in names]
                if isinstance(names, list) and len(names) == len(slots)
                else None
            )
            self.layouts[p] = HistLayout.concat(slots)
            self.features += [
                FeatureRef(p, i, f"{p}:{shown[i]}" if shown else f"{p}:#{i}")
                for i in range(len(slots))
            ]

    # -- one tree --

    def _grow_tree(
        self, t: int, layout: HistLayout
    ) -> Generator[Outbox, Mapping[str, Message], Tree]:
        rng = np.random.default_rng([self.params.seed, t])
        n = len(self.train_rows)
        sampled = rng.random(n) < self.params.subsample if self.params.subsample < 1 else None
        mask = self._colsample(rng, layout.n_features)
        g, h = logistic_gradients(self.margin, self.y_train)
        gi, hi = quantize(g, self.bits), quantize(h, self.bits)
        part = RowPartition(n, sampled)
        grower = TreeGrower(
            layout, self.params.tree_params(), scale=math.ldexp(1.0, -self.bits), feature_mask=mask
        )
        stats = _TreeStats()
        self.tree_stats.append(stats)
        replies: Mapping[str, Message] = {}
        if self.passives:
            replies = yield self._gradient_messages(t, part, gi, hi, mask, stats)
            stats.rounds += 1
        need = [0]
        while True:
            hists = self._node_histograms(need, part, gi, hi, replies, stats)
            start = time.perf_counter()
            splits = grower.add_histograms(hists)
            stats.local_s += time.perf_counter() - start
            if grower.done:
                break
            out = self._split_messages(t, splits, part)
            replies = (yield out) if out else {}
            stats.rounds += bool(out)
            need = grower.add_partition(self._apply_splits(t, splits, part, replies))
            if grower.done:
                break
            if self.passives:
                replies = yield {p: self._hist_request(t, need, part) for p in self.passives}
                stats.rounds += 1
        self.margin += grower.tree.leaf_values()[part.positions]
        return grower.tree

    def _colsample(self, rng: np.random.Generator, n_features: int) -> np.ndarray | None:
        if self.params.colsample_bytree >= 1:
            return None
        k = max(1, int(self.params.colsample_bytree * n_features))
        mask = np.zeros(n_features, dtype=bool)
        mask[rng.choice(n_features, size=k, replace=False)] = True
        return mask

    def _gradient_messages(
        self,
        t: int,
        part: RowPartition,
        gi: np.ndarray,
        hi: np.ndarray,
        mask: np.ndarray | None,
        stats: _TreeStats,
    ) -> Outbox:
        assert self.key is not None and self.spec is not None
        rows = part.sampled_rows(0)
        start = time.perf_counter()
        assert self._stock is not None
        blob = secure_hist.encrypt_gradients(self._stock, self.spec, gi[rows], hi[rows])
        if t + 1 < self.params.n_estimators:  # next tree's randomness, while the others work
            self._stock.prefetch(len(rows))
        stats.encrypt_s += time.perf_counter() - start
        out = {}
        offset = self.layouts[self.name].n_features
        for p in self.passives:
            nf = self.layouts[p].n_features
            features = np.ones(nf, bool) if mask is None else mask[offset : offset + nf]
            offset += nf
            out[p] = Message(
                GRADIENTS,
                meta={"tree": t},
                arrays={"rows": rows.astype(np.uint32), "features": features},
                blobs={"ciphertexts": blob},
            )
        return out

    def _hist_request(self, t: int, need: list[int], part: RowPartition) -> Message:
        offsets, rows = _ragged([part.sampled_rows(node) for node in need], np.uint32)
        return Message(
            HIST_REQUEST,
            meta={"tree": t},
            arrays={"nodes": np.asarray(need, np.int32), "offsets": offsets, "rows": rows},
        )

    def _node_histograms(
        self,
        need: list[int],
        part: RowPartition,
        gi: np.ndarray,
        hi: np.ndarray,
        replies: Mapping[str, Message],
        stats: _TreeStats,
    ) -> dict[int, NodeHistogram]:
        start = time.perf_counter()
        rows = {node: part.sampled_rows(node) for node in need}
        totals = {node: (int(gi[r].sum()), int(hi[r].sum())) for node, r in rows.items()}
        own_layout = self.layouts[self.name]
        grads: dict[int, list[np.ndarray]] = {node: [] for node in need}
        hesses: dict[int, list[np.ndarray]] = {node: [] for node in need}
        for node, r in rows.items():
            g, h = plain_histogram(self.bins, r, gi, hi, own_layout)
            grads[node].append(g)
            hesses[node].append(h)
        stats.local_s += time.perf_counter() - start
        if self.passives:
            start = time.perf_counter()
            self._decode_passive(need, totals, replies, grads, hesses)
            stats.decrypt_s += time.perf_counter() - start
        return {
            node: NodeHistogram(
                np.concatenate(grads[node]), np.concatenate(hesses[node]), *totals[node]
            )
            for node in need
        }

    def _decode_passive(
        self,
        need: list[int],
        totals: Mapping[int, tuple[int, int]],
        replies: Mapping[str, Message],
        grads: dict[int, list[np.ndarray]],
        hesses: dict[int, list[np.ndarray]],
    ) -> None:
        assert self.key is not None and self.spec is not None
        width = self.key.public.ciphertext_bytes
        encrypted = {
            p: _read_histograms(_reply(replies, p, HISTOGRAMS), width) for p in self.passives
        }
        jobs = [(p, node) for p in self.passives for node in need]
        for p, node in jobs:
            if node not in encrypted[p]:
                raise ProtocolError(f"party '{p}' did not send the histogram of node {node}")
        plain = secure_hist.decrypt_many(self.key, [encrypted[p][node].packed for p, node in jobs])
        for (p, node), values in zip(jobs, plain, strict=True):
            g, h = secure_hist.decode_histogram(
                values, encrypted[p][node], self.spec, self.layouts[p], *totals[node]
            )
            grads[node].append(g)
            hesses[node].append(h)

    def _owner(self, feature: int) -> tuple[str, int]:
        ref = self.features[feature]
        return ref.party, ref.index

    def _split_messages(
        self, t: int, splits: Mapping[int, NodeSplit], part: RowPartition
    ) -> Outbox:
        by_party: dict[str, list[NodeSplit]] = {}
        for ns in splits.values():
            party, _ = self._owner(ns.split.feature)
            if party != self.name:
                by_party.setdefault(party, []).append(ns)
        out = {}
        for party, items in by_party.items():
            offsets, rows = _ragged([part.rows(ns.node) for ns in items], np.uint32)
            out[party] = Message(
                SPLIT,
                meta={"tree": t},
                arrays={
                    "nodes": np.asarray([ns.node for ns in items], np.int32),
                    "features": np.asarray(
                        [self._owner(ns.split.feature)[1] for ns in items], np.int32
                    ),
                    "bins": np.asarray([ns.split.bin for ns in items], np.int32),
                    "default_left": np.asarray([ns.split.default_left for ns in items], bool),
                    "offsets": offsets,
                    "rows": rows,
                },
            )
        return out

    def _apply_splits(
        self,
        t: int,
        splits: Mapping[int, NodeSplit],
        part: RowPartition,
        replies: Mapping[str, Message],
    ) -> dict[int, tuple[int, int]]:
        remote: dict[int, np.ndarray] = {}
        for party, msg in replies.items():
            msg.expect(SPLIT_REPLY)
            nodes = msg.array("nodes").tolist()
            lengths = [len(part.rows(node)) for node in nodes]
            for node, mask in zip(
                nodes, _unpack_bits(msg.array("offsets"), msg.array("bits"), lengths), strict=True
            ):
                if node not in splits or self._owner(splits[node].split.feature)[0] != party:
                    raise ProtocolError(f"party '{party}' answered for a split it does not own")
                remote[node] = mask
        counts = {}
        for node, ns in splits.items():
            rows = part.rows(node)
            party, f = self._owner(ns.split.feature)
            if party == self.name:
                col = self.bins[rows, f].astype(np.int64)
                mask = np.where(
                    col == self.mapper.n_bins[f], ns.split.default_left, col <= ns.split.bin
                )
                self.model.own_splits.add(
                    t, node, f, self.mapper.threshold(f, ns.split.bin), ns.split.default_left
                )
            elif node in remote:
                mask = remote[node]
            else:
                raise ProtocolError(f"party '{party}' did not answer the split of node {node}")
            counts[node] = part.apply(ns, rows, mask)
        return counts

    # -- validation --

    def _validate(self, t: int, tree: Tree) -> Generator[Outbox, Mapping[str, Message], float]:
        n = len(self.valid_rows)
        routes = self.model.own_splits.route(self.x[self.valid_rows], {t})
        if self.passives and any(
            self._owner(tree.feature[v])[0] != self.name for v in tree.split_nodes()
        ):
            req = Message(
                ROUTE_REQUEST,
                arrays={
                    "rows": self.valid_rows.astype(np.uint32),
                    "trees": np.asarray([t], np.int32),
                },
            )
            replies = yield {p: req for p in self.passives}
            for p in self.passives:
                routes.update(read_routes(_reply(replies, p, ROUTES), n))

        def go_left(node: int, rows: np.ndarray) -> np.ndarray:
            return routes[(t, node)][rows]

        self.valid_margin += tree.leaf_values()[tree.leaf_index(n, go_left)]
        p = np.clip(sigmoid(self.valid_margin), 1e-15, 1 - 1e-15)
        y = self.y[self.valid_rows]
        loss = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
        self.valid_loss.append(loss)
        return loss


def _reply(replies: Mapping[str, Message], party: str, kind: str) -> Message:
    msg = replies.get(party)
    if msg is None:
        raise ProtocolError(f"no '{kind}' reply from party '{party}'")
    return msg.expect(kind)


# --- in-process driver ---------------------------------------------------------------------------


@dataclass
class RunStats:
    """What :func:`run_in_process` measured: bytes through the codec, per tree and in total."""

    bytes_total: int = 0
    bytes_per_tree: dict[int, int] = field(default_factory=dict)
    messages: int = 0


def run_in_process(active: ActiveParty, passives: Mapping[str, PassiveParty]) -> RunStats:
    """Run training to the end, every message through :func:`encode`/:func:`decode`."""
    stats = RunStats()
    inbox: dict[str, Message] = {}
    while True:
        outbox = active.step(inbox)
        if active.done:
            return stats
        inbox = {}
        for party, msg in outbox.items():
            reply = passives[party].handle(_relay(msg, stats, len(active.tree_stats) - 1))
            if reply is not None:
                inbox[party] = _relay(reply, stats, len(active.tree_stats) - 1)


def _relay(msg: Message, stats: RunStats, tree: int) -> Message:
    data = encode(msg)
    stats.bytes_total += len(data)
    stats.messages += 1
    stats.bytes_per_tree[tree] = stats.bytes_per_tree.get(tree, 0) + len(data)
    return decode(data)


def predict_in_process(
    model: SecureBoostModel,
    x_own: np.ndarray,
    passives: Mapping[str, tuple[SplitTable, np.ndarray]],
) -> np.ndarray:
    """Federated scores of aligned rows: every owner routes its nodes, the label holder walks.

    ``passives`` maps a party to its split table and its features of the same rows.
    """
    routes = model.own_splits.route(x_own)
    for party, (table, x) in passives.items():
        msg = _relay(routes_message_from(table.route(x), len(x)), RunStats(), 0)
        routes.update(read_routes(msg, len(x)))
        del party
    return model.predict_proba(len(x_own), routes)
