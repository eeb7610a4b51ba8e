"""SecureBoost: vertical federated XGBoost with Paillier, as pure party classes.

Roles (``docs/leakage.md`` lists what each message reveals)
    :class:`ActiveParty` — the label holder: labels, its own binned features, the Paillier key
    pair. It computes gradients, encrypts them, decrypts the per-bin sums the passive parties
    return, finds every split (:class:`fedsilo.ml.tree.TreeGrower`), keeps tree shapes and leaf
    values. :class:`PassiveParty` — holds features only: bins them locally, sums ciphertexts per
    (node, feature, bin) (:mod:`fedsilo.ml.secure_hist`), and keeps the thresholds of the splits
    it owns in its own :class:`fedsilo.protocols.secureboost.model.SplitTable`.

Exchange
    Parties exchange :class:`fedsilo.message.Message` objects only, so a silo step can relay
    them unchanged. ``ActiveParty.step(inbox) -> outbox`` is resumable (a generator underneath):
    the caller delivers each ``outbox[party]`` to ``PassiveParty.handle`` and feeds the replies
    back as the next ``inbox``, until ``ActiveParty.done``. :func:`run_in_process` is that loop
    for tests and benchmarks (through the byte codec, counting relayed bytes).

Modules: :mod:`fedsilo.protocols.secureboost.params` (parameters),
:mod:`fedsilo.protocols.secureboost.wire` (message kinds and layouts),
:mod:`fedsilo.protocols.secureboost.passive` (the passive party),
:mod:`fedsilo.protocols.secureboost.model` (the model parts), this module (the label holder and
the in-process driver; it re-exports the public names of the others).

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
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedsilo import settings
from fedsilo.crypto.paillier import PrivateKey, PublicKey, generate_keypair, rerandomiser_base
from fedsilo.errors import ConfigError, DataError, ProtocolError
from fedsilo.message import Message, decode, encode
from fedsilo.ml import secure_hist
from fedsilo.ml.binning import fit_bins
from fedsilo.ml.secure_hist import PackingSpec
from fedsilo.ml.tree import (
    HistLayout,
    NodeHistogram,
    NodeSplit,
    RowPartition,
    Tree,
    TreeGrower,
    base_margin,
    logistic_gradients,
    plain_histogram,
    precision_bits,
    quantize,
    sigmoid,
)
from fedsilo.protocols.secureboost.model import FeatureRef, SecureBoostModel, SplitTable
from fedsilo.protocols.secureboost.params import SecureBoostParams
from fedsilo.protocols.secureboost.passive import PassiveParty
from fedsilo.protocols.secureboost.wire import (
    FINISH,
    GRADIENTS,
    HIST_REQUEST,
    HISTOGRAMS,
    LAYOUT,
    ROUTE_REQUEST,
    ROUTES,
    SETUP,
    SPLIT,
    SPLIT_REPLY,
    check_rows,
    ragged,
    read_histograms,
    read_routes,
    routes_message,
    routes_message_from,
    unpack_bits,
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

# --- the active party ----------------------------------------------------------------------------


#: format tag of a label holder's training checkpoint (:meth:`ActiveParty.checkpoint`)
CHECKPOINT_FORMAT = "fedsilo.secureboost.checkpoint/1"

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
        self.train_rows = check_rows(train_rows, len(self.y))
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
        self._rerandomise_base: Any = None
        if self.passives:
            pub, self.key = keypair or generate_keypair(
                params.key_bits, insecure_min_bits=params.insecure_min_key_bits
            )
            self.spec = PackingSpec.for_job(pub.bits, len(self.train_rows), self.bits)
            self._stock = secure_hist.ObfuscatorStock(self.key)
            self._rerandomise_base = rerandomiser_base(self.key)
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
        #: early-stopping state, kept on the object (not in the generator) so it checkpoints
        self._best, self._best_loss, self._stopped = 0, math.inf, False
        self._checkpoint: dict[str, Any] | None = None
        self._gen: Protocol = self._protocol()
        self._start_tree = 0
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
        for t in range(self.model.n_trees, self.params.n_estimators):
            if self._stopped:
                break
            tree = yield from self._grow_tree(t, layout)
            self.model.trees.append(tree)
            if len(self.valid_rows):
                loss = yield from self._validate(t, tree)
                self._early_stopping(t, loss)
            self._checkpoint = self.checkpoint()
        if self.params.early_stopping_rounds:
            best = self._best
            self.model.trees = self.model.trees[: best + 1]
            self.model.own_splits.truncate(best + 1)
            self.model.metrics = {"best_iteration": best, "valid_logloss": self._best_loss}
        if self.passives:
            yield {p: Message(FINISH, meta={"n_trees": self.model.n_trees}) for p in self.passives}

    def _early_stopping(self, t: int, loss: float) -> None:
        """Track the best tree; stop after ``early_stopping_rounds`` trees without a better one."""
        if loss < self._best_loss:
            self._best, self._best_loss = t, loss
        else:
            rounds = self.params.early_stopping_rounds
            self._stopped = rounds is not None and rounds > 0 and t - self._best >= rounds

    # -- checkpoints (resume after a fault) --

    @property
    def start_tree(self) -> int:
        """The tree training starts at: 0, or the number of trees restored from a checkpoint."""
        return self._start_tree

    def take_checkpoint(self) -> dict[str, Any] | None:
        """The checkpoint of the last completed tree, once (``None`` when no tree completed since).

        The caller stores it: the protocol stays free of storage. Taken at a tree boundary, so
        it never holds half a tree.
        """
        snapshot, self._checkpoint = self._checkpoint, None
        return snapshot

    def checkpoint(self) -> dict[str, Any]:
        """What continuing after the trees so far needs, as JSON.

        The trees and own thresholds, the margins of training and validation rows (the label
        holder cannot recompute them: routing a passive silo's nodes needs that silo), the
        validation losses and the early-stopping state. No randomness: tree ``t`` draws from
        ``(seed, t)``, and the Paillier key does not enter the (exact) histograms.
        """
        return {
            "format": CHECKPOINT_FORMAT,
            "trees": [tree.to_dict() for tree in self.model.trees],
            "own_splits": self.model.own_splits.to_dict(),
            "margin": self.margin.tolist(),
            "valid_margin": self.valid_margin.tolist(),
            "valid_loss": list(self.valid_loss),
            "best": self._best,
            "best_loss": None if math.isinf(self._best_loss) else self._best_loss,
            "stopped": self._stopped,
        }

    def restore(self, state: Mapping[str, Any]) -> int:
        """Continue after the trees of a :meth:`checkpoint`; call before the first :meth:`step`.

        Returns the tree training resumes at. Refuses a checkpoint that does not fit these rows
        and parameters (``DataError``).
        """
        if self._started:
            raise ProtocolError("restore comes before the first step")
        try:
            if state.get("format") != CHECKPOINT_FORMAT:
                raise ValueError("unknown format")
            trees = [Tree.from_dict(t) for t in state["trees"]]
            splits = SplitTable.from_dict(state["own_splits"])
            margin = np.asarray(state["margin"], dtype=np.float64)
            valid_margin = np.asarray(state["valid_margin"], dtype=np.float64)
            valid_loss = [float(v) for v in state["valid_loss"]]
            best, best_loss = int(state["best"]), state["best_loss"]
            stopped = bool(state["stopped"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"bad SecureBoost checkpoint: {exc}") from None
        if (
            len(trees) > self.params.n_estimators
            or margin.shape != self.margin.shape
            or valid_margin.shape != self.valid_margin.shape
        ):
            raise DataError("SecureBoost checkpoint does not fit this job's rows or parameters")
        self.model.trees, self.model.own_splits = trees, splits
        self.margin, self.valid_margin, self.valid_loss = margin, valid_margin, valid_loss
        self._best = best
        self._best_loss = math.inf if best_loss is None else float(best_loss)
        self._stopped = stopped
        self.tree_stats = [_TreeStats() for _ in trees]
        self._start_tree = len(trees)
        return self._start_tree

    def _setup_message(self) -> Message:
        assert self.key is not None and self.spec is not None
        meta = {
            "start_tree": self._start_tree,
            "n": format(int(self.key.public.n), "x"),
            "rerandomise_base": format(int(self._rerandomise_base), "x"),
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
        offsets, rows = ragged([part.sampled_rows(node) for node in need], np.uint32)
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
            p: read_histograms(_reply(replies, p, HISTOGRAMS), width) for p in self.passives
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
            offsets, rows = ragged([part.rows(ns.node) for ns in items], np.uint32)
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
                nodes, unpack_bits(msg.array("offsets"), msg.array("bits"), lengths), strict=True
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
        prob = np.clip(sigmoid(self.valid_margin), 1e-15, 1 - 1e-15)
        y = self.y[self.valid_rows]
        loss = float(-np.mean(y * np.log(prob) + (1 - y) * np.log(1 - prob)))
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
