"""The SecureBoost passive party: a silo that holds features only.

It bins its columns locally (the bin edges never leave it), sums the label holder's ciphertexts
per (node, feature, bin) (:mod:`fedsilo.ml.secure_hist`), and keeps the thresholds of the splits
it owns in its own :class:`~fedsilo.protocols.secureboost.model.SplitTable`. It answers one
message at a time (:meth:`PassiveParty.handle`) and checks every index it is given.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from fedsilo import settings
from fedsilo.crypto import paillier
from fedsilo.crypto.paillier import PublicKey
from fedsilo.errors import DataError, ProtocolError
from fedsilo.message import Message
from fedsilo.ml import secure_hist
from fedsilo.ml.binning import BinMapper, fit_bins
from fedsilo.ml.secure_hist import PackingSpec
from fedsilo.ml.tree import HistLayout
from fedsilo.protocols.secureboost.model import FORMAT, SplitTable
from fedsilo.protocols.secureboost.params import SecureBoostParams
from fedsilo.protocols.secureboost.wire import (
    FINISH,
    GRADIENTS,
    HIST_REQUEST,
    LAYOUT,
    ROUTE_REQUEST,
    SETUP,
    SPLIT,
    SPLIT_REPLY,
    check_rows,
    histograms_message,
    pack_bits,
    routes_message_from,
    unragged,
    withheld,
)

__all__ = ["PassiveParty"]

#: format tag of a passive silo's training checkpoint (:meth:`PassiveParty.checkpoint`)
CHECKPOINT_FORMAT = "fedsilo.secureboost.passive_checkpoint/1"


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
        #: the label holder's published generator every reply is re-randomised with
        self._base: Any = None
        self._spec: PackingSpec | None = None
        self._tree = -1
        self._restored_tree = -1
        #: the tree training (re)started at, as agreed in the setup message
        self.start_tree = 0
        self._cts: np.ndarray = np.zeros((0, 0), np.uint8)
        self._ct_pos: np.ndarray = np.zeros(0, np.int64)
        self._features: np.ndarray | None = None
        self._groups: list[list[int]] | None = None

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
        if (msg.kind == SETUP) == (self._bins is not None):
            raise ProtocolError(f"'{msg.kind}' out of order (sgb.setup comes once, first)")
        return handler(msg)

    # -- checkpoints (resume after a fault) --

    def checkpoint(self) -> dict[str, Any]:
        """What this silo needs to continue training: its split table and the tree it is on.

        Taken after every gradients and split message, so it holds every split this silo
        answered: whenever the label holder has completed ``k`` trees, this silo has seen the
        gradients of tree ``k - 1`` and stored all its splits of trees ``< k``.
        """
        return {"format": CHECKPOINT_FORMAT, "tree": self._tree, **self.splits.to_dict()}

    def restore(self, state: dict[str, Any]) -> None:
        """Take back a :meth:`checkpoint`; call before the setup message is handled."""
        if self._bins is not None:
            raise ProtocolError("restore comes before sgb.setup")
        try:
            if state.get("format") != CHECKPOINT_FORMAT:
                raise ValueError("unknown format")
            tree = int(state["tree"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"bad SecureBoost checkpoint: {exc}") from None
        self.splits = SplitTable.from_dict(state)
        self._restored_tree = max(tree, -1)

    @property
    def resumable_trees(self) -> int:
        """How many completed trees this silo can continue after (its checkpoint's reach)."""
        return self._restored_tree + 1

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
            self._base = paillier.check_rerandomiser_base(
                self._public, int(str(meta["rerandomise_base"]), 16)
            )
            params = SecureBoostParams.from_dict(meta["params"])
        except (KeyError, ValueError) as exc:
            raise ProtocolError(f"bad sgb.setup: {exc}") from None
        self._spec = PackingSpec.from_meta(meta["packing"], self._public.bits)
        self._resume_at(meta.get("start_tree", 0))
        train = check_rows(msg.array("train_rows"), len(self.x))
        x_train = self.x[train]
        self._mapper = fit_bins(
            x_train,
            max_bin=params.max_bin,
            method=params.binning,
            feature_names=self.feature_names,
            missing=params.missing_value,
        )
        self._bins = self._mapper.transform(x_train, params.missing_value)
        self._groups = secure_hist.feature_groups(
            self._bins, self._mapper.slots, settings.SECUREBOOST_JOINT_ROWS_PER_CELL
        )
        names = self.feature_names if self.reveal_feature_names else None
        return Message(
            LAYOUT, meta={"names": names}, arrays={"slots": self._mapper.slots.astype(np.int32)}
        )

    def _resume_at(self, start: object) -> None:
        """Continue at the label holder's tree if this silo's checkpoint reaches it.

        If it does not, training starts over here (``start_tree`` 0) and the coordinator,
        seeing the silos disagree, refuses the resumed run.
        """
        if not isinstance(start, int) or start < 0:
            raise ProtocolError("bad sgb.setup: start_tree must be a tree index")
        self.start_tree = start if start <= self.resumable_trees else 0
        self.splits.truncate(self.start_tree)
        self._tree = self.start_tree - 1

    def _on_gradients(self, msg: Message) -> Message:
        assert self._public is not None and self._bins is not None
        tree = int(msg.meta.get("tree", -1))
        if tree != self._tree + 1:
            raise ProtocolError("sgb.gradients for an unexpected tree")
        self._tree = tree
        rows = check_rows(msg.array("rows"), len(self._bins))
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
        parts = unragged(msg.array("offsets"), msg.array("rows"), len(nodes))
        return self._histograms(nodes.tolist(), parts)

    def _histograms(self, nodes: list[int], parts: list[np.ndarray]) -> Message:
        assert self._bins is not None and self._mapper is not None and self._public is not None
        assert self._spec is not None
        start = time.perf_counter()
        layout = HistLayout.concat(self._mapper.slots)
        hists = []
        for rows in parts:
            rows = check_rows(rows, len(self._bins))
            pos = self._ct_pos[rows]
            if np.any(pos < 0):
                raise ProtocolError("histogram requested over rows without gradients")
            if len(rows) < self.min_node_rows:
                hists.append(withheld(layout))
                continue
            hists.append(
                secure_hist.encrypted_histogram(
                    self._public,
                    self._spec,
                    self._cts[pos],
                    self._bins[rows],
                    layout,
                    self._features,
                    self._groups,
                    rerandomise_base=self._base,
                )
            )
        self.stats[self._tree]["hist_s"] += time.perf_counter() - start
        return histograms_message(self._tree, nodes, hists, self._public.ciphertext_bytes)

    def _on_split(self, msg: Message) -> Message:
        assert self._bins is not None and self._mapper is not None
        tree = self._check_tree(msg)
        nodes = msg.array("nodes").tolist()
        feats, bins_ = msg.array("features").tolist(), msg.array("bins").tolist()
        dls = msg.array("default_left").astype(bool).tolist()
        parts = unragged(msg.array("offsets"), msg.array("rows"), len(nodes))
        n_bins = self._mapper.n_bins
        masks = []
        for node, f, b, dl, rows in zip(nodes, feats, bins_, dls, parts, strict=True):
            if not 0 <= f < len(n_bins) or not -1 <= b < n_bins[f]:
                raise ProtocolError("sgb.split names a feature or bin that does not exist")
            rows = check_rows(rows, len(self._bins))
            col = self._bins[rows, f].astype(np.int64)
            masks.append(np.where(col == n_bins[f], dl, col <= b))
            self.splits.add(tree, node, f, self._mapper.threshold(f, b), dl)
        offsets, bits = pack_bits(masks)
        return Message(
            SPLIT_REPLY,
            meta={"tree": tree},
            arrays={"nodes": np.asarray(nodes, np.int32), "offsets": offsets, "bits": bits},
        )

    def _on_route_request(self, msg: Message) -> Message:
        rows = check_rows(msg.array("rows"), len(self.x))
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
