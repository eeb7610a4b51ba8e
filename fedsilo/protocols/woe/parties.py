"""The ``woe`` step's two parties: the label holder and a passive silo (plain objects).

::

    label holder   encrypts every aligned row's label, [y_i] (Paillier, its own key)  -> passives
    passive        bins its own characteristics; per bin the product of its rows' [y_i · 2^W + 1]
                   = [events_b · 2^W + rows_b], packed and re-randomised               -> holder
    label holder   decrypts per-bin (events, rows); WOE and IV per bin; monotonic merges
                   -> to each passive, as the holder's policy allows: merges, WOE per bin, IV

A passive never sees a label (only ciphertexts); the label holder sees per-bin counts of bins that
hold at least the passive's ``min_rows_per_statistic`` rows and nothing about single rows (every
packed sum is re-randomised, :func:`fedsilo.ml.secure_hist.encrypted_histogram`). The label
holder bins and tables its own characteristics in the clear. ``docs/leakage.md`` has the table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedsilo import settings
from fedsilo.crypto import paillier
from fedsilo.crypto.paillier import PublicKey, generate_keypair, rerandomiser_base
from fedsilo.errors import DataError, PolicyError, ProtocolError
from fedsilo.leakage import register_kind
from fedsilo.message import Message
from fedsilo.ml import secure_hist
from fedsilo.ml.secure_hist import EncryptedHistogram, PackingSpec
from fedsilo.ml.tree import HistLayout
from fedsilo.ml.woe import (
    Characteristic,
    WoeTable,
    fit_categorical,
    fit_numeric,
    merge_counts,
    monotonic_groups,
    woe_table,
)

__all__ = ["COUNTS", "LABELS", "RESULT", "LabelHolder", "PassiveParty", "WoeSettings"]

LABELS = register_kind(
    "woe.labels",
    reveals="the label holder's Paillier public key, a generator of its randomness subgroup and "
    "a ciphertext of every aligned row's label (nothing without the key); the row count",
)
COUNTS = register_kind(
    "woe.counts",
    reveals="to the label holder, who decrypts them: per bin of each of the sender's "
    "characteristics the number of events and of rows, for bins holding at least the sender's "
    "min_rows_per_statistic rows (smaller bins are merged or left out, looking empty); how many "
    "bins each characteristic has, whether it is categorical and has a missing bin; names only "
    "if its policy allows",
)
RESULT = register_kind(
    "woe.result",
    reveals="to the owner of the characteristics, as the label holder's policy allows: the IV of "
    "each (release_woe_iv); the WOE of each bin and which adjacent bins the monotonic merge "
    "joined (release_woe_table), i.e. the event rate order of its bins",
)

_PRECISION_BITS = 1  # labels are 0 or 1


@dataclass(frozen=True)
class WoeSettings:
    """A woe step as every party reads it."""

    max_bins: int = 10
    monotonic: bool = False
    categorical: frozenset[str] = frozenset()
    smoothing: float = 0.5


def fit_characteristics(
    x: np.ndarray, names: Sequence[str], cfg: WoeSettings, min_rows: int
) -> list[Characteristic]:
    """Bins of every column of ``x`` (rows x columns), fitted by their owner."""
    return [
        fit_categorical(n, x[:, j], min_rows)
        if n in cfg.categorical
        else fit_numeric(n, x[:, j], cfg.max_bins, min_rows)
        for j, n in enumerate(names)
    ]


def _groups_for(char: Characteristic, table: WoeTable, cfg: WoeSettings) -> np.ndarray | None:
    """Monotonic merge groups of a numeric characteristic's value bins, or None (no merge)."""
    if not cfg.monotonic or char.categorical:
        return None
    k = char.value_bins
    groups = monotonic_groups(table.events[:k], table.rows[:k])
    return None if int(groups.max(initial=0)) == k - 1 else groups


def tabulate(
    chars: Sequence[Characteristic],
    events: Sequence[np.ndarray],
    rows: Sequence[np.ndarray],
    totals: tuple[int, int],
    cfg: WoeSettings,
) -> tuple[list[Characteristic], list[WoeTable], list[np.ndarray | None]]:
    """WOE tables of characteristics from their per-bin counts, monotonic merges applied."""
    out_chars, tables, merges = [], [], []
    for char, e, n in zip(chars, events, rows, strict=True):
        released = np.ones(char.n_bins, bool)
        released[list(char.withheld)] = False
        table = woe_table(e, n, *totals, released=released, smoothing=cfg.smoothing)
        groups = _groups_for(char, table, cfg)
        if groups is not None:
            extra = char.n_bins - char.value_bins
            char = char.merged(groups.tolist())
            e, n = merge_counts(e, groups, extra), merge_counts(n, groups, extra)
            released = np.ones(char.n_bins, bool)
            released[list(char.withheld)] = False
            table = woe_table(e, n, *totals, released=released, smoothing=cfg.smoothing)
        out_chars.append(char)
        tables.append(table)
        merges.append(groups)
    return out_chars, tables, merges


class LabelHolder:
    """Labels and its own characteristics; the Paillier key of the step."""

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        *,
        feature_names: Sequence[str],
        settings_: WoeSettings,
        passives: Sequence[str],
        party: str = "label_holder",
        min_rows: int = settings.DEFAULT_MIN_ROWS_PER_STATISTIC,
        key_bits: int = settings.PAILLIER_KEY_BITS,
        release_iv: bool = False,
        release_table: bool = False,
        insecure_min_key_bits: int | None = None,
    ) -> None:
        self.party, self.cfg, self.passives = party, settings_, sorted(passives)
        self.y = np.asarray(y, dtype=np.float64)
        if not np.all((self.y == 0) | (self.y == 1)):
            raise DataError("WOE needs 0/1 labels")
        self.totals = (int(self.y.sum()), len(self.y))
        self.release_iv, self.release_table = release_iv, release_table
        self.key_bits, self._insecure = key_bits, insecure_min_key_bits
        x = np.asarray(x, dtype=np.float64)
        own = fit_characteristics(x, list(feature_names), settings_, min_rows)
        ev, rw = [], []
        for j, c in enumerate(own):
            idx = c.bin_index(x[:, j])
            ev.append(np.bincount(idx[idx >= 0], weights=self.y[idx >= 0], minlength=c.n_bins))
            rw.append(np.bincount(idx[idx >= 0], minlength=c.n_bins))
            ev[-1][list(c.withheld)] = 0
            rw[-1][list(c.withheld)] = 0
        self.chars, self.tables, _ = tabulate(
            own, [e.astype(np.int64) for e in ev], rw, self.totals, settings_
        )
        #: per passive: its characteristics' tables (what this silo learned)
        self.passive_tables: dict[str, list[WoeTable]] = {}
        self.passive_names: dict[str, list[str]] = {}
        self._key: paillier.PrivateKey | None = None
        self._spec: PackingSpec | None = None

    def released_meta(self) -> dict[str, Any]:
        """What the label holder releases at setup: rows, its characteristics and bins."""
        return {
            "rows": len(self.y),
            "characteristics": len(self.chars),
            "bins": sum(c.n_bins for c in self.chars),
        }

    def labels_message(self) -> Message:
        """Every aligned row's label, encrypted (the same message to every passive)."""
        public, self._key = generate_keypair(self.key_bits, insecure_min_bits=self._insecure)
        self._spec = PackingSpec.for_job(public.bits, len(self.y), _PRECISION_BITS)
        stock = secure_hist.ObfuscatorStock(self._key)
        stock.prefetch(len(self.y))
        labels = self.y.astype(np.int64)
        blob = secure_hist.encrypt_gradients(stock, self._spec, labels, np.ones_like(labels))
        meta = {
            "n": format(int(public.n), "x"),
            "rerandomise_base": format(int(rerandomiser_base(self._key)), "x"),
            "packing": self._spec.to_meta(),
            "rows": len(self.y),
        }
        return Message(LABELS, meta=meta, blobs={"ct": blob})

    def results(self, counts: Mapping[str, Message]) -> dict[str, Message]:
        """Decrypt every passive's per-bin sums; WOE tables; what each owner may get back."""
        if self._key is None or self._spec is None:
            raise ProtocolError("woe counts before the labels were sent")
        if sorted(counts) != self.passives:
            raise ProtocolError(f"woe counts expected from {self.passives}, got {sorted(counts)}")
        out = {}
        for party, msg in counts.items():
            chars, hist, layout = _read_counts(msg.expect(COUNTS))
            plain = secure_hist.decrypt_many(self._key, [hist.packed])[0] if hist.packed else []
            if len(plain) != -(-int(hist.present.sum()) // self._spec.pairs_per_ciphertext):
                raise ProtocolError(f"woe counts of '{party}' have the wrong number of sums")
            ev, rw = secure_hist.decode_histogram(plain, hist, self._spec, layout, 0, 0)
            ptr = layout.ptr
            e = [ev[ptr[f] : ptr[f + 1] - 1] for f in range(len(chars))]
            n = [rw[ptr[f] : ptr[f + 1] - 1] for f in range(len(chars))]
            if any(int(v.sum()) > self.totals[1] for v in n):
                raise ProtocolError(f"woe counts of '{party}' exceed the rows")
            merged, tables, merges = tabulate(chars, e, n, self.totals, self.cfg)
            self.passive_tables[party] = tables
            self.passive_names[party] = [c.name for c in merged]
            out[party] = self._result_message(party, tables, merges)
        return out

    def _result_message(
        self, party: str, tables: list[WoeTable], merges: list[np.ndarray | None]
    ) -> Message:
        if self.cfg.monotonic and any(m is not None for m in merges) and not self.release_table:
            raise PolicyError(
                f"monotonic WOE bins of '{party}' need this silo's [policy] release_woe_table "
                "(the merged bins tell the owner the order of their event rates)"
            )
        meta: dict[str, Any] = {"iv": self.release_iv, "table": self.release_table}
        arrays: dict[str, np.ndarray] = {}
        if self.release_iv:
            arrays["iv"] = np.array([t.iv for t in tables], dtype=np.float64)
        if self.release_table:
            meta["merges"] = [None if m is None else m.tolist() for m in merges]
            arrays["woe"] = np.concatenate([t.woe for t in tables]) if tables else np.zeros(0)
            arrays["woe_bins"] = np.array([len(t.woe) for t in tables], dtype=np.int64)
        return Message(RESULT, meta=meta, arrays=arrays)


def _read_counts(msg: Message) -> tuple[list[Characteristic], EncryptedHistogram, HistLayout]:
    """The shape of a passive's counts: bins per characteristic (as placeholders the label holder
    tables by position; it never learns the edges) and the packed sums."""
    bins = msg.array("bins").astype(np.int64)
    if len(bins) == 0 or bins.min() < 1 or bins.max() > settings.SECUREBOOST_MAX_BIN + 2:
        raise ProtocolError("woe counts: impossible number of bins")
    layout = HistLayout.concat(bins + 1)
    present = msg.array("present").astype(bool)
    if present.shape != (layout.n_slots,):
        raise ProtocolError("woe counts: slot mask has the wrong length")
    hist = EncryptedHistogram(
        present=present,
        omitted=np.full(len(bins), -1, dtype=np.int64),
        packed=msg.blob("packed"),
    )
    names = msg.meta.get("names")
    shown = names if isinstance(names, list) and len(names) == len(bins) else None
    categorical = msg.array("categorical").astype(bool)
    missing = msg.array("missing").astype(bool)
    if categorical.shape != bins.shape or missing.shape != bins.shape or np.any(bins <= missing):
        raise ProtocolError("woe counts: characteristic flags do not match the bins")
    chars = []
    for i, b in enumerate(bins.tolist()):
        k = b - int(missing[i])  # value bins
        edges = tuple(float(v) for v in range(k if categorical[i] else k - 1))
        name = str(shown[i]) if shown else f"#{i}"
        chars.append(Characteristic(name, bool(categorical[i]), edges, missing=bool(missing[i])))
    return chars, hist, layout


class PassiveParty:
    """A silo holding characteristics but no labels."""

    def __init__(
        self,
        x: np.ndarray,
        *,
        feature_names: Sequence[str],
        settings_: WoeSettings,
        party: str = "passive",
        min_rows: int = settings.DEFAULT_MIN_ROWS_PER_STATISTIC,
        reveal_feature_names: bool = False,
        insecure_min_key_bits: int | None = None,
    ) -> None:
        self.party, self.cfg = party, settings_
        self.x = np.asarray(x, dtype=np.float64)
        self.names = list(feature_names)
        self.chars = fit_characteristics(self.x, self.names, settings_, min_rows)
        self.reveal_names, self._insecure = reveal_feature_names, insecure_min_key_bits
        #: what the label holder released back (None: not released)
        self.woe: list[np.ndarray] | None = None
        self.iv: list[float] | None = None

    def released_meta(self) -> dict[str, Any]:
        """What a passive silo releases when it sends its counts."""
        return {
            "rows": len(self.x),
            "characteristics": len(self.chars),
            "bins": sum(c.n_bins for c in self.chars),
        }

    def accepted_meta(self) -> dict[str, Any]:
        """What a passive silo releases once it took the result: which parts it received."""
        return {"iv": self.iv is not None, "woe": self.woe is not None}

    def counts_message(self, labels: Message) -> Message:
        """Per bin of every own characteristic, the encrypted (events, rows) sums."""
        meta = labels.expect(LABELS).meta
        try:
            public = PublicKey.from_n(int(str(meta["n"]), 16), insecure_min_bits=self._insecure)
            base = paillier.check_rerandomiser_base(public, int(str(meta["rerandomise_base"]), 16))
            rows = int(meta["rows"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"bad woe.labels: {exc}") from None
        spec = PackingSpec.from_meta(meta["packing"], public.bits)
        width = public.ciphertext_bytes
        blob = labels.blob("ct")
        if rows != len(self.x) or len(blob) != rows * width:
            raise ProtocolError(f"woe.labels is for {rows} rows, this silo aligned {len(self.x)}")
        cts = np.frombuffer(blob, dtype=np.uint8).reshape(rows, width)
        slots = np.array([c.n_bins + 1 for c in self.chars], dtype=np.int64)
        layout = HistLayout.concat(slots)
        bins = np.empty(self.x.shape, dtype=np.int64)
        mask = np.ones(layout.n_slots, bool)
        for j, c in enumerate(self.chars):
            idx = c.bin_index(self.x[:, j])
            bins[:, j] = np.where(idx >= 0, idx, c.n_bins)  # rows without a bin: a slot never sent
            mask[layout.ptr[j] + c.n_bins] = False
            mask[[layout.ptr[j] + w for w in c.withheld]] = False
        groups = secure_hist.feature_groups(
            bins, slots, settings.SECUREBOOST_JOINT_ROWS_PER_CELL
        )  # coarse characteristics summed through their joint cells where that is cheaper
        hist = secure_hist.encrypted_histogram(
            public,
            spec,
            cts,
            bins,
            layout,
            groups=groups,
            rerandomise_base=base,
            slot_mask=mask,
            omit_largest=False,
        )
        names = [c.name for c in self.chars] if self.reveal_names else None
        return Message(
            COUNTS,
            meta={"names": names},
            arrays={
                "bins": slots - 1,
                "categorical": np.array([c.categorical for c in self.chars], dtype=np.uint8),
                "missing": np.array([c.missing for c in self.chars], dtype=np.uint8),
                "present": hist.present.astype(np.uint8),
            },
            blobs={"packed": hist.packed},
        )

    def accept_result(self, msg: Message) -> None:
        """Take the merges, WOE and IV the label holder's policy released."""
        msg = msg.expect(RESULT)
        if msg.meta.get("iv"):
            iv = msg.array("iv").astype(np.float64)
            if len(iv) != len(self.chars):
                raise ProtocolError("woe.result: one IV per characteristic expected")
            self.iv = iv.tolist()
        if msg.meta.get("table"):
            merges = msg.meta.get("merges")
            if not isinstance(merges, list) or len(merges) != len(self.chars):
                raise ProtocolError("woe.result: one merge entry per characteristic expected")
            self.chars = [
                c if m is None else c.merged(m) for c, m in zip(self.chars, merges, strict=True)
            ]
            sizes = msg.array("woe_bins").astype(np.int64)
            woe = msg.array("woe").astype(np.float64)
            if sizes.tolist() != [c.n_bins for c in self.chars] or len(woe) != int(sizes.sum()):
                raise ProtocolError("woe.result: WOE values do not match the bins")
            self.woe = np.split(woe, np.cumsum(sizes)[:-1])
