"""The two parties of a fairness audit and what they exchange (no server, no grpc).

The attribute holder A (any silo) knows each aligned row's protected groups; the label holder L
knows each row's score and label. L must learn group-level statistics only, A nothing about
scores or labels. Three messages (the security argument is in ``docs/leakage.md`` and
``docs/crypto.md``, "Fairness audit"):

1. ``fairness.groups`` (A -> L): the released groups (label, row count) and, per row, a Paillier
   ciphertext under A's key of its group indicators, packed one slot per group
   (``Σ 2^(W·slot)``). Withheld groups have no slot.
2. ``fairness.masked`` (L -> A): L multiplies the row ciphertexts into per-(score bin, label)
   sums (one homomorphic product per row), forms the statistics it needs (positives, selected
   and true positives at each threshold, rows, positives and score sums per calibration band;
   for the AUC, per bin the positives ``P_b`` and ``Q_b = 2·(negatives below b) + negatives in b``),
   adds to every slot a uniform mask 40 bits wider than the value and re-randomises. With them go
   the masks ``α_b, β_b`` of ``P_b, Q_b``, encrypted under L's own key.
3. ``fairness.shares`` (A -> L): A decrypts and returns the masked statistics; for the AUC it
   computes, per group, ``Σ_b P_b·Q_b`` minus ``Σ_b α_b·β_b`` under L's key from its masked
   shares ``p' = P + α``, ``q' = Q + β`` (``PQ = p'q' - p'β - αq' + αβ``), re-randomised. L removes
   its masks: ``AUC = Σ_b P_b·Q_b / (2·positives·negatives)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import gmpy2
import numpy as np
from gmpy2 import mpz

from fedsilo import settings
from fedsilo.crypto import paillier
from fedsilo.crypto.paillier import PrivateKey, PublicKey
from fedsilo.errors import PolicyError, ProtocolError
from fedsilo.leakage import register_kind
from fedsilo.message import Message, pack_uints, unpack_uints
from fedsilo.ml.secure_hist import ObfuscatorStock, decrypt_many
from fedsilo.protocols.fairness.arith import multi_powmod, pack_slots, random_masks, unpack_slots
from fedsilo.protocols.fairness.groups import GroupPlan, Slot

__all__ = [
    "GROUPS",
    "MASKED",
    "SHARES",
    "AttributeHolder",
    "AuditSettings",
    "GroupCounts",
    "LabelHolder",
    "Layout",
    "layout",
    "score_edges",
]

GROUPS = register_kind(
    "fairness.groups",
    reveals="the attribute holder's released protected groups (labels such as 'SEX=2' or "
    "'AGE in [25, 35)') with their row counts, each at least its min_rows_per_statistic, for "
    "columns its policy's release_group_counts names; per aligned row one Paillier ciphertext "
    "under its own key of the row's group indicators (nothing about any row's group)",
)
MASKED = register_kind(
    "fairness.masked",
    reveals="Paillier ciphertexts under the attribute holder's key of per-group sums the label "
    "holder formed, each slot masked with a uniform value 40 bits wider than the sum and "
    "re-randomised (statistically nothing about scores or labels once decrypted), the masks of "
    "the AUC terms under the label holder's own key, and how many score bins it used",
)
SHARES = register_kind(
    "fairness.shares",
    reveals="for each released group only: its positives, its selected rows and true positives "
    "at each threshold, its rows, positives and score sum in each calibration band, and its AUC "
    "numerator (under the label holder's key, re-randomised): group-level statistics, no row",
)

#: ciphertext item names of the statistics, in order (the AUC's two per bin follow them)
_POSITIVES = "positives"


@dataclass(frozen=True)
class AuditSettings:
    """What the step asks for, as both parties read it from the accepted spec."""

    thresholds: tuple[float, ...] = (0.5,)
    approval_rates: tuple[float, ...] = ()
    calibration_bands: int = 10
    bins: int = 128
    key_bits: int = settings.PAILLIER_KEY_BITS
    insecure_min_key_bits: int | None = None

    @property
    def cuts(self) -> int:
        return len(self.thresholds) + len(self.approval_rates)

    def items(self, bins: int) -> int:
        """Ciphertexts per chunk L sends: the statistics, then ``P_b`` and ``Q_b`` per bin."""
        return 1 + 2 * self.cuts + 3 * self.calibration_bands + 2 * bins

    def most_bins(self) -> int:
        """The most score bins L may use: its own, plus one edge per threshold and band cut."""
        return self.bins + self.cuts + self.calibration_bands


@dataclass(frozen=True)
class Layout:
    """How slots are packed: ``slot_width`` bits each, ``per_ct`` per plaintext."""

    slots: int
    slot_width: int
    per_ct: int

    @property
    def chunks(self) -> int:
        return -(-self.slots // self.per_ct)

    def chunk_slots(self, c: int) -> range:
        return range(c * self.per_ct, min(self.slots, (c + 1) * self.per_ct))

    @property
    def value_bytes(self) -> int:
        return (self.slot_width + 7) // 8


def value_bits(rows: int) -> int:
    """Bits of the largest slot value: a score sum (``rows·2^SCORE_BITS``) or ``2·rows``."""
    return max(int(rows).bit_length() + settings.FAIRNESS_SCORE_BITS, (2 * rows).bit_length())


def layout(rows: int, slots: int, key_bits: int) -> Layout:
    """The packing both parties derive from public numbers (rows, slots, key size)."""
    width = value_bits(rows) + settings.FAIRNESS_MASK_STAT_BITS + 1
    per_ct = (key_bits - 2) // width
    if per_ct < 1:
        raise ProtocolError(f"a {key_bits}-bit key cannot hold one {width}-bit slot")
    return Layout(slots=slots, slot_width=width, per_ct=per_ct)


def _mask_bits(rows: int, auc: bool) -> int:
    """Mask width: the AUC terms (at most ``2·rows``) get narrower masks than score sums, so the
    attribute holder's exponents in the cross terms stay short."""
    bound = (2 * rows).bit_length() if auc else value_bits(rows)
    return bound + settings.FAIRNESS_MASK_STAT_BITS


# --- the attribute holder ------------------------------------------------------------------------


class AttributeHolder:
    """A's side: its groups, its key, the row ciphertexts; then opening L's masked sums."""

    def __init__(self, party: str, plan: GroupPlan, audit: AuditSettings) -> None:
        if not plan.slots:
            raise PolicyError("no protected group has enough rows to be released")
        self.party, self.plan, self.audit = party, plan, audit
        self.rows = len(plan.row_slots)
        self.public, self.key = paillier.generate_keypair(
            audit.key_bits, insecure_min_bits=audit.insecure_min_key_bits
        )
        self.layout = layout(self.rows, len(plan.slots), self.public.bits)
        self.peer_public: PublicKey | None = None

    def groups_message(self) -> Message:
        """Released groups in slot order and one ciphertext per row and chunk."""
        lay, width = self.layout, self.layout.slot_width
        plaintexts: list[Any] = []
        for c in range(lay.chunks):
            first = c * lay.per_ct
            in_chunk = (self.plan.row_slots >= first) & (self.plan.row_slots < first + lay.per_ct)
            shifts = np.where(in_chunk, (self.plan.row_slots - first) * width, -1)
            plaintexts += [
                sum((mpz(1) << int(s) for s in row if s >= 0), mpz(0)) for row in shifts.tolist()
            ]
        stock = ObfuscatorStock(self.key)
        stock.prefetch(len(plaintexts))
        cts = paillier.encrypt_with(self.public, plaintexts, stock.take(len(plaintexts)))
        base = paillier.rerandomiser_base(self.key)
        return Message(
            GROUPS,
            meta={
                "n": str(int(self.public.n)),
                "rerandomiser": str(int(base)),
                "rows": self.rows,
                "slot_width": lay.slot_width,
                "slots": [[s.grouping, s.label, s.rows] for s in self.plan.slots],
                "withheld": self.plan.withheld,
            },
            blobs={"rows": pack_uints(cts, self.public.ciphertext_bytes)},
        )

    def shares_message(self, masked: Message) -> Message:
        """Open L's masked statistics; the AUC numerators under L's key (module docstring)."""
        masked.expect(MASKED)
        lay = self.layout
        peer = PublicKey.from_n(
            int(masked.meta["n"]), insecure_min_bits=self.audit.insecure_min_key_bits
        )
        bins = int(masked.meta["bins"])
        if not 1 <= bins <= self.audit.most_bins():
            raise ProtocolError(f"label holder used {bins} score bins, above what the step allows")
        items = self.audit.items(bins)
        width = self.public.ciphertext_bytes
        blob = masked.blob("sums")
        if len(blob) != items * lay.chunks * width:
            raise ProtocolError("masked sums do not match the step's statistics")
        tasks = [blob[i : i + 64 * width] for i in range(0, len(blob), 64 * width)]
        opened = [v for part in decrypt_many(self.key, tasks) for v in part]
        values = self._slot_values(opened, items)  # [item][slot]
        stats = items - 2 * bins
        auc = self._auc_terms(peer, values[stats:], bins, masked)
        flat = [v for row in values[:stats] for v in row]
        return Message(
            SHARES,
            meta={"items": stats, "slots": lay.slots},
            blobs={
                "stats": pack_uints(flat, lay.value_bytes),
                "auc": pack_uints(auc, peer.ciphertext_bytes),
            },
        )

    def _slot_values(self, opened: list[Any], items: int) -> list[list[Any]]:
        lay = self.layout
        out: list[list[Any]] = [[] for _ in range(items)]
        for c in range(lay.chunks):
            count = len(lay.chunk_slots(c))
            for i in range(items):
                value = mpz(opened[c * items + i])
                if value < 0:
                    raise ProtocolError("a masked statistic decrypted to a negative value")
                out[i] += unpack_slots(value, lay.slot_width, count)
        return out

    def _auc_terms(
        self, peer: PublicKey, values: list[list[Any]], bins: int, masked: Message
    ) -> list[Any]:
        """Per slot ``Enc_L(Σ p'q' - Σ (p'β + αq'))``, re-randomised with a uniform ``r^n``."""
        lay, n2 = self.layout, peer.n2
        alpha = unpack_uints(masked.blob("alpha"), peer.ciphertext_bytes)
        beta = unpack_uints(masked.blob("beta"), peer.ciphertext_bytes)
        if len(alpha) != bins * lay.slots or len(beta) != bins * lay.slots:
            raise ProtocolError("AUC masks do not match the bins and groups")
        if not all(0 < c < n2 for c in [*alpha, *beta]):
            raise ProtocolError("an AUC mask ciphertext is out of range")
        out = []
        for s in range(lay.slots):
            p = [values[2 * b][s] for b in range(bins)]
            q = [values[2 * b + 1][s] for b in range(bins)]
            plain = sum((x * y for x, y in zip(p, q, strict=True)), mpz(0))
            bases = [beta[b * lay.slots + s] for b in range(bins)]
            bases += [alpha[b * lay.slots + s] for b in range(bins)]
            cross = multi_powmod(bases, p + q, n2)
            ct = (1 + (plain % peer.n) * peer.n) % n2 * gmpy2.invert(cross, n2) % n2
            out.append(ct * paillier.encrypt_reference(peer, 0) % n2)
        return out


# --- the label holder ----------------------------------------------------------------------------


def score_edges(scores: np.ndarray, bins: int, cuts: Sequence[float]) -> np.ndarray:
    """Bin edges: every distinct score when there are at most ``bins`` (exact AUC), else at most
    ``bins`` bins of equal shares of the rows, where a frequent score gets a bin of its own (its
    ties stay exact) and the rest share the bins left; always with the thresholds and band cuts
    among them (exact selection counts)."""
    uniq, counts = np.unique(scores, return_counts=True)
    if len(uniq) <= bins:
        edges = uniq[1:]
    else:  # a bin closes at its share of the rows still to place: a frequent score gets a bin
        left, acc = len(scores), 0
        cut: list[float] = []  # alone and the others share the bins it left over
        for value, count in zip(uniq.tolist(), counts.tolist(), strict=True):
            if acc and acc >= left / (bins - len(cut)) and len(cut) < bins - 1:
                cut.append(value)
                left -= acc
                acc = 0
            acc += count
        edges = np.asarray(cut, dtype=np.float64)
    return np.unique(np.concatenate([edges, np.asarray(cuts, dtype=np.float64)]))


@dataclass
class GroupCounts:
    """What L learns about one released group (all group-level)."""

    grouping: str
    label: str
    rows: int
    positives: int
    #: per threshold: selected rows (score >= threshold) and true positives among them
    selected: list[int] = field(default_factory=list)
    true_positives: list[int] = field(default_factory=list)
    #: per calibration band: rows, positives, mean score
    band_rows: list[int] = field(default_factory=list)
    band_positives: list[int] = field(default_factory=list)
    band_mean_score: list[float | None] = field(default_factory=list)
    #: 2 × (positive-negative pairs ranked right + half the ties)
    auc_pairs2: int = 0

    @property
    def negatives(self) -> int:
        return self.rows - self.positives


class LabelHolder:
    """L's side: scores and labels of the aligned rows, the masked sums, then the statistics."""

    def __init__(
        self, party: str, scores: np.ndarray, labels: np.ndarray, audit: AuditSettings
    ) -> None:
        if len(scores) != len(labels):
            raise ProtocolError("scores and labels of the alignment differ in length")
        if not np.all(np.isfinite(scores)):
            raise ProtocolError("a score of the alignment is not a finite number")
        self.party, self.audit = party, audit
        self.scores = np.asarray(scores, dtype=np.float64)
        self.labels = np.asarray(labels, dtype=np.float64) > 0.5
        rows = len(scores)
        self.thresholds = [float(t) for t in audit.thresholds] + [
            float(np.quantile(self.scores, a)) for a in audit.approval_rates
        ]
        qs = np.arange(1, audit.calibration_bands) / audit.calibration_bands
        self.band_cuts = np.unique(np.quantile(self.scores, qs)) if rows else np.empty(0)
        self.edges = score_edges(self.scores, audit.bins, [*self.thresholds, *self.band_cuts])
        self.bin_of = np.searchsorted(self.edges, self.scores, side="right")
        self._keys: tuple[PublicKey, PrivateKey] | None = None
        self._state: dict[str, Any] = {}

    @property
    def public(self) -> PublicKey:
        return self._own_keys()[0]

    @property
    def key(self) -> PrivateKey:
        return self._own_keys()[1]

    def _own_keys(self) -> tuple[PublicKey, PrivateKey]:
        """L's key pair for the AUC masks, made on first use (a local audit needs none)."""
        if self._keys is None:
            self._keys = paillier.generate_keypair(
                self.audit.key_bits, insecure_min_bits=self.audit.insecure_min_key_bits
            )
        return self._keys

    @property
    def bins(self) -> int:
        return len(self.edges) + 1

    def _first_bin(self, cut: float) -> int:
        """First bin whose scores are all ``>= cut`` (``cut`` is an edge)."""
        return int(np.searchsorted(self.edges, cut, side="left")) + 1

    def _bands(self) -> list[tuple[int, int]]:
        starts = [0] + [self._first_bin(c) for c in self.band_cuts]
        stops = starts[1:] + [self.bins]
        bands = list(zip(starts, stops, strict=True))
        bands += [(self.bins, self.bins)] * (self.audit.calibration_bands - len(bands))
        return bands

    def _score_codes(self) -> tuple[list[int], float, float]:
        """Per bin the mean pooled score as ``FAIRNESS_SCORE_BITS`` fixed point of [lo, hi]."""
        lo = float(self.scores.min()) if len(self.scores) else 0.0
        hi = float(self.scores.max()) if len(self.scores) else 1.0
        span = hi - lo if hi > lo else 1.0
        sums = np.bincount(self.bin_of, weights=self.scores, minlength=self.bins)
        counts = np.bincount(self.bin_of, minlength=self.bins)
        means = np.where(counts > 0, sums / np.maximum(counts, 1), lo)
        scale = 1 << settings.FAIRNESS_SCORE_BITS
        return [int(round((m - lo) / span * scale)) for m in means], lo, span

    def masked_message(self, groups: Message) -> Message:
        """Sums per (bin, label), the statistics, masked and re-randomised (module docstring)."""
        groups.expect(GROUPS)
        peer = PublicKey.from_n(
            int(groups.meta["n"]), insecure_min_bits=self.audit.insecure_min_key_bits
        )
        rows = len(self.scores)
        if int(groups.meta["rows"]) != rows:
            raise ProtocolError("the attribute holder's alignment has another row count")
        slots = [Slot(str(g), str(lbl), int(n)) for g, lbl, n in groups.meta["slots"]]
        lay = layout(rows, len(slots), peer.bits)
        if int(groups.meta["slot_width"]) != lay.slot_width:
            raise ProtocolError("the attribute holder packs its groups in another slot width")
        cts = unpack_uints(groups.blob("rows"), peer.ciphertext_bytes)
        if len(cts) != rows * lay.chunks:
            raise ProtocolError("row ciphertexts do not match the alignment")
        stock = ObfuscatorStock(self.key)  # the AUC masks' encryption, in the pool meanwhile
        stock.prefetch(2 * self.bins * lay.slots)
        n2 = peer.n2
        cells = self.bin_of * 2 + self.labels.astype(np.int64)  # (bin, label)
        items: list[Any] = []
        for c in range(lay.chunks):
            acc = [mpz(1)] * (2 * self.bins)
            for i, cell in enumerate(cells.tolist()):
                acc[cell] = acc[cell] * cts[c * rows + i] % n2
            items += self._statistics(acc, n2)
        per_chunk = len(items) // lay.chunks
        stats = per_chunk - 2 * self.bins
        wide = random_masks(len(items) * lay.per_ct, _mask_bits(rows, auc=False))
        narrow = random_masks(len(items) * lay.per_ct, _mask_bits(rows, auc=True))
        tables = paillier.rerandomiser_tables(
            peer, paillier.check_rerandomiser_base(peer, int(groups.meta["rerandomiser"]))
        )
        masked, slot_masks = [], []
        for j, ct in enumerate(items):
            count = len(lay.chunk_slots(j // per_chunk))
            masks = narrow if j % per_chunk >= stats else wide
            m = masks[j * lay.per_ct : j * lay.per_ct + count]
            slot_masks.append(m)
            masked.append(ct * (1 + pack_slots(m, lay.slot_width) * peer.n) % n2)
        masked = paillier.rerandomise(tables, masked)
        self._state = {"slots": slots, "layout": lay, "masks": slot_masks, "per_chunk": per_chunk}
        alpha, beta = self._auc_masks(slot_masks, lay, per_chunk, stock)
        width = self.public.ciphertext_bytes
        return Message(
            MASKED,
            meta={"n": str(int(self.public.n)), "bins": self.bins},
            blobs={
                "sums": pack_uints(masked, peer.ciphertext_bytes),
                "alpha": pack_uints(alpha, width),
                "beta": pack_uints(beta, width),
            },
        )

    def _statistics(self, acc: list[Any], n2: Any) -> list[Any]:
        """Ciphertexts of one chunk: positives; selected, TP per threshold; per band rows,
        positives, score sum; then ``P_b``, ``Q_b`` per bin. With ``n2`` None, the same
        statistics of plain counts (a product of ciphertexts is a sum of plaintexts)."""
        if n2 is None:
            return self._plain_statistics(acc)
        pos = acc[1::2]
        neg = acc[0::2]
        both = [p * q % n2 for p, q in zip(pos, neg, strict=True)]

        def prod(values: Sequence[Any]) -> Any:
            out = mpz(1)
            for v in values:
                out = out * v % n2
            return out

        out = [prod(pos)]
        for t in self.thresholds:
            j = self._first_bin(t)
            out += [prod(both[j:]), prod(pos[j:])]
        codes, _lo, _span = self._score_codes()
        for a, b in self._bands():
            scored = [gmpy2.powmod(both[k], codes[k], n2) for k in range(a, b)]
            out += [prod(both[a:b]), prod(pos[a:b]), prod(scored)]
        below = mpz(1)
        for b in range(self.bins):
            out += [pos[b], below * below % n2 * neg[b] % n2]
            below = below * neg[b] % n2
        return out

    def _plain_statistics(self, cells: list[int]) -> list[int]:
        """:meth:`_statistics` over plain per-(bin, label) counts."""
        pos, neg = cells[1::2], cells[0::2]
        both = [p + q for p, q in zip(pos, neg, strict=True)]
        out = [sum(pos)]
        for t in self.thresholds:
            j = self._first_bin(t)
            out += [sum(both[j:]), sum(pos[j:])]
        codes, _lo, _span = self._score_codes()
        for a, b in self._bands():
            out += [sum(both[a:b]), sum(pos[a:b]), sum(both[k] * codes[k] for k in range(a, b))]
        below = 0
        for b in range(self.bins):
            out += [pos[b], 2 * below + neg[b]]
            below += neg[b]
        return out

    def _auc_masks(
        self, slot_masks: list[list[Any]], lay: Layout, per_chunk: int, stock: ObfuscatorStock
    ) -> tuple[list[Any], list[Any]]:
        """``α_b, β_b`` of every slot under L's key, bin-major: what A needs for the cross terms."""
        stats = per_chunk - 2 * self.bins
        alpha_plain, beta_plain = [], []
        for b in range(self.bins):
            for c in range(lay.chunks):
                alpha_plain += slot_masks[c * per_chunk + stats + 2 * b]
                beta_plain += slot_masks[c * per_chunk + stats + 2 * b + 1]
        alpha = paillier.encrypt_with(self.public, alpha_plain, stock.take(len(alpha_plain)))
        beta = paillier.encrypt_with(self.public, beta_plain, stock.take(len(beta_plain)))
        self._state["alpha"], self._state["beta"] = alpha_plain, beta_plain
        return alpha, beta

    def finish(self, shares: Message) -> list[GroupCounts]:
        """Remove the masks: every released group's counts (module docstring)."""
        shares.expect(SHARES)
        st = self._state
        lay: Layout = st["layout"]
        per_chunk, masks = st["per_chunk"], st["masks"]
        stats = per_chunk - 2 * self.bins
        flat = unpack_uints(shares.blob("stats"), lay.value_bytes)
        auc = unpack_uints(shares.blob("auc"), self.public.ciphertext_bytes)
        if len(flat) != stats * lay.slots or len(auc) != lay.slots:
            raise ProtocolError("the attribute holder's shares do not match the statistics")
        value = [[0] * lay.slots for _ in range(stats)]
        for i in range(stats):
            for s in range(lay.slots):
                c, k = divmod(s, lay.per_ct)
                value[i][s] = int(flat[i * lay.slots + s] - masks[c * per_chunk + i][k])
        pairs2 = [
            int(
                paillier.decrypt_signed(self.key, auc[s])
                + sum(
                    st["alpha"][b * lay.slots + s] * st["beta"][b * lay.slots + s]
                    for b in range(self.bins)
                )
            )
            for s in range(lay.slots)
        ]
        return self._counts(st["slots"], value, pairs2)

    def plain_counts(self, plan: GroupPlan) -> list[GroupCounts]:
        """The same counts from groups this silo holds itself (no other party, no encryption):
        the attribute held at the label holder."""
        value: list[list[int]] = []
        pairs2 = []
        for s in range(len(plan.slots)):
            rows = (plan.row_slots == s).any(axis=1)
            cells = np.bincount(
                (self.bin_of * 2 + self.labels)[rows], minlength=2 * self.bins
            ).tolist()
            stats = self._statistics(cells, None)
            value.append([int(v) for v in stats[: len(stats) - 2 * self.bins]])
            pairs2.append(
                sum(
                    int(p) * int(q)
                    for p, q in zip(
                        stats[-2 * self.bins :: 2], stats[1 - 2 * self.bins :: 2], strict=True
                    )
                )
            )
        return self._counts(
            list(plan.slots), [list(col) for col in zip(*value, strict=True)], pairs2
        )

    def _counts(
        self, slots: Sequence[Slot], value: list[list[int]], pairs2: list[int]
    ) -> list[GroupCounts]:
        """Per slot its counts from ``value[item][slot]`` (``_statistics``' order)."""
        _codes, lo, span = self._score_codes()
        scale = 1 << settings.FAIRNESS_SCORE_BITS
        out = []
        for s, slot in enumerate(slots):
            counts = GroupCounts(
                slot.grouping, slot.label, slot.rows, value[0][s], auc_pairs2=pairs2[s]
            )
            at = 1
            for _t in self.thresholds:
                counts.selected.append(value[at][s])
                counts.true_positives.append(value[at + 1][s])
                at += 2
            for _band in range(self.audit.calibration_bands):
                n, p, ssum = value[at][s], value[at + 1][s], value[at + 2][s]
                counts.band_rows.append(n)
                counts.band_positives.append(p)
                counts.band_mean_score.append(lo + ssum / n / scale * span if n else None)
                at += 3
            out.append(counts)
        return out
