"""Weight of evidence (WOE) and information value (IV): binning a characteristic, the WOE table
from per-bin event counts, the transform, and scorecard points.

Shared by the ``woe`` step (binning at each owner, the table at the label holder), the ``select``
step (IV thresholds) and the scorecard (``lr`` with ``transform = "woe"``, which transforms each
silo's own columns and turns coefficients into points). Plain numpy; nothing knows about parties.

Conventions (``docs/scorecard.md``):

* A :class:`Characteristic` is one column's bins. Numeric: ascending inner ``edges``, bin ``b``
  holds ``edges[b-1] <= x < edges[b]`` (``len(edges) + 1`` value bins). Categorical: one bin per
  listed value, then an ``other`` bin for every value not listed (when ``other``). Missing values
  (NaN) have their own bin, last (when ``missing``). ``withheld`` bins are below the owner's
  ``min_rows_per_statistic``: their counts are never released and they have no WOE (the
  transform gives their rows 0, the population's log odds).
* ``WOE_b = ln((nonevents_b / NONEVENTS) / (events_b / EVENTS))`` over the whole population's
  totals; a bin with no event or no non-event adds ``smoothing`` to both of its counts.
  ``IV_b = (nonevents_b / NONEVENTS - events_b / EVENTS) * WOE_b`` (the smoothed shares), and a
  characteristic's IV is the sum over its released bins.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fedsilo.errors import DataError

__all__ = [
    "Characteristic",
    "ScoreScale",
    "WoeTable",
    "fit_categorical",
    "fit_numeric",
    "monotonic_groups",
    "woe_table",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Characteristic:
    """One column's bins, kept by the column's owner (see the module docstring)."""

    name: str
    categorical: bool
    #: numeric: inner cut values, ascending; categorical: the value of each listed bin
    edges: tuple[float, ...]
    #: categorical: a last value bin for every value not listed
    other: bool = False
    #: a bin for missing values, after the value bins
    missing: bool = False
    #: bins whose counts are not released (below the owner's minimum rows)
    withheld: tuple[int, ...] = ()

    @property
    def value_bins(self) -> int:
        if self.categorical:
            return len(self.edges) + int(self.other)
        return len(self.edges) + 1

    @property
    def n_bins(self) -> int:
        return self.value_bins + int(self.missing)

    def bin_index(self, col: npt.ArrayLike) -> IntArray:
        """Bin of every value of ``col``; -1 for a value with no bin (a category not listed when
        there is no ``other`` bin, a missing value without a missing bin)."""
        x = np.asarray(col, dtype=np.float64)
        nan = np.isnan(x)
        if self.categorical:
            values = np.asarray(self.edges, dtype=np.float64)
            order = np.argsort(values)
            pos = np.searchsorted(values[order], x)
            pos = np.minimum(pos, max(len(values) - 1, 0))
            found = (values[order][pos] == x) if len(values) else np.zeros(len(x), bool)
            out = np.where(found, order[pos] if len(values) else 0, -1).astype(np.int64)
            if self.other:
                out[(out < 0) & ~nan] = len(self.edges)
        else:
            out = np.searchsorted(np.asarray(self.edges), x, side="right").astype(np.int64)
        out[nan] = self.value_bins if self.missing else -1
        return out

    def labels(self) -> list[str]:
        """How the owner's report names each bin."""
        out: list[str] = []
        if self.categorical:
            out += [f"= {_fmt(v)}" for v in self.edges]
            out += ["other"] if self.other else []
        else:
            lows = ["-inf", *(_fmt(e) for e in self.edges)]
            highs = [*(_fmt(e) for e in self.edges), "inf"]
            out += [f"[{lo}, {hi})" for lo, hi in zip(lows, highs, strict=True)]
        return out + (["missing"] if self.missing else [])

    def merged(self, groups: Sequence[int]) -> Characteristic:
        """Numeric bins merged by ``groups`` (a group per value bin, non-decreasing, from 0, in
        steps of at most 1): the edges kept are those between two groups."""
        g = np.asarray(groups, dtype=np.int64)
        if (
            self.categorical
            or len(g) != self.value_bins
            or (len(g) and g[0] != 0)
            or np.any(np.diff(g) < 0)
            or np.any(np.diff(g) > 1)
        ):
            raise DataError(f"characteristic '{self.name}': bad bin merge")
        keep = tuple(e for i, e in enumerate(self.edges) if g[i + 1] != g[i])
        gone = len(self.edges) - len(keep)  # bins after the value bins move down by this many
        withheld = tuple(w - gone if w >= self.value_bins else int(g[w]) for w in self.withheld)
        return Characteristic(self.name, False, keep, missing=self.missing, withheld=withheld)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "categorical": self.categorical,
            "edges": list(self.edges),
            "other": self.other,
            "missing": self.missing,
            "withheld": list(self.withheld),
        }

    @classmethod
    def from_dict(cls, d: Any) -> Characteristic:
        try:
            c = cls(
                name=str(d["name"]),
                categorical=bool(d["categorical"]),
                edges=tuple(float(e) for e in d["edges"]),
                other=bool(d["other"]),
                missing=bool(d["missing"]),
                withheld=tuple(int(w) for w in d["withheld"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"bad characteristic: {exc}") from None
        if any(not 0 <= w < c.n_bins for w in c.withheld) or (
            not c.categorical and any(b <= a for a, b in zip(c.edges, c.edges[1:], strict=False))
        ):
            raise DataError(f"bad characteristic '{c.name}': edges or withheld bins")
        return c


def _fmt(v: float) -> str:
    return f"{v:g}"


def _counts(bins: IntArray, n_bins: int) -> IntArray:
    return np.bincount(bins[bins >= 0], minlength=n_bins).astype(np.int64)


def fit_numeric(name: str, col: npt.ArrayLike, max_bins: int, min_rows: int) -> Characteristic:
    """Quantile bins of a numeric column, adjacent bins merged until each holds ``min_rows``.

    Cuts are the distinct values at ranks ``ceil(k * n / max_bins)`` of the sorted non-missing
    values (the minimum excluded), so equal values never straddle a cut. A missing bin below
    ``min_rows`` is withheld; so is the single bin of a column with fewer than ``min_rows``
    values.
    """
    x = np.asarray(col, dtype=np.float64)
    vals = np.sort(x[~np.isnan(x)])
    edges = np.zeros(0)
    if len(vals):
        ranks = np.ceil(np.arange(1, max_bins) * len(vals) / max_bins).astype(np.int64)
        edges = np.unique(vals[np.clip(ranks, 0, len(vals) - 1)])
        edges = edges[edges > vals[0]]
    counts = np.bincount(np.searchsorted(edges, vals, side="right"), minlength=len(edges) + 1)
    edges = _merge_small(edges, counts.astype(np.int64), min_rows)
    n_missing = int(np.isnan(x).sum())
    withheld = []
    if len(vals) < min_rows:
        withheld.append(0)
    if 0 < n_missing < min_rows:
        withheld.append(len(edges) + 1)
    return Characteristic(
        name, False, tuple(float(e) for e in edges), missing=n_missing > 0, withheld=tuple(withheld)
    )


def _merge_small(edges: FloatArray, counts: IntArray, min_rows: int) -> FloatArray:
    """Drop cuts until every bin holds ``min_rows`` rows: the smallest bin joins its smaller
    neighbour, again and again."""
    cuts, sizes = [float(e) for e in edges], [int(c) for c in counts]
    while len(sizes) > 1 and min(sizes) < min_rows:
        i = int(np.argmin(sizes))
        j = i - 1 if i == len(sizes) - 1 or (i > 0 and sizes[i - 1] <= sizes[i + 1]) else i + 1
        lo = min(i, j)
        sizes[lo : lo + 2] = [sizes[lo] + sizes[lo + 1]]
        del cuts[lo]
    return np.asarray(cuts, dtype=np.float64)


def fit_categorical(name: str, col: npt.ArrayLike, min_rows: int) -> Characteristic:
    """One bin per value holding at least ``min_rows`` rows; the rarer values pooled in an
    ``other`` bin (withheld if it is still below ``min_rows``); missing values as numeric."""
    x = np.asarray(col, dtype=np.float64)
    nan = np.isnan(x)
    values, counts = np.unique(x[~nan], return_counts=True)
    listed = values[counts >= min_rows]
    rest = int(counts[counts < min_rows].sum())
    other = rest > 0
    n_missing = int(nan.sum())
    withheld = []
    if other and rest < min_rows:
        withheld.append(len(listed))
    if 0 < n_missing < min_rows:
        withheld.append(len(listed) + int(other))
    return Characteristic(
        name,
        True,
        tuple(float(v) for v in listed),
        other=other,
        missing=n_missing > 0,
        withheld=tuple(withheld),
    )


@dataclass(frozen=True)
class WoeTable:
    """Per bin of one characteristic: events, rows, WOE and IV (NaN for a withheld bin)."""

    events: IntArray
    rows: IntArray
    woe: FloatArray
    iv_bins: FloatArray

    @property
    def iv(self) -> float:
        return float(np.nansum(self.iv_bins))


def woe_table(
    events: npt.ArrayLike,
    rows: npt.ArrayLike,
    total_events: int,
    total_rows: int,
    *,
    released: npt.ArrayLike | None = None,
    smoothing: float = 0.5,
) -> WoeTable:
    """WOE and IV per bin from per-bin event and row counts and the population's totals."""
    e = np.asarray(events, dtype=np.int64)
    n = np.asarray(rows, dtype=np.int64)
    ok = np.ones(len(e), bool) if released is None else np.asarray(released, dtype=bool)
    total_non = total_rows - total_events
    if total_events <= 0 or total_non <= 0:
        raise DataError("WOE needs both events and non-events in the population")
    if np.any(e < 0) or np.any(e > n):
        raise DataError("bin counts are inconsistent (events outside [0, rows])")
    ef, nef = e.astype(np.float64), (n - e).astype(np.float64)
    zero = (ef == 0) | (nef == 0)
    ef, nef = np.where(zero, ef + smoothing, ef), np.where(zero, nef + smoothing, nef)
    with np.errstate(divide="ignore", invalid="ignore"):
        share_e, share_ne = ef / total_events, nef / total_non
        woe = np.log(share_ne / share_e)
    live = ok & (n > 0)
    woe = np.where(live, woe, np.nan)
    iv = np.where(live, (share_ne - share_e) * woe, np.nan)
    return WoeTable(events=e, rows=n, woe=woe, iv_bins=iv)


def transform(char: Characteristic, woe: npt.ArrayLike, col: npt.ArrayLike) -> FloatArray:
    """Each value's bin WOE; 0 for a withheld or empty bin or a value without a bin."""
    w = np.nan_to_num(np.asarray(woe, dtype=np.float64), nan=0.0)
    if len(w) != char.n_bins:
        raise DataError(f"characteristic '{char.name}': {len(w)} WOE values for {char.n_bins} bins")
    idx = char.bin_index(col)
    return np.where(idx >= 0, w[np.maximum(idx, 0)], 0.0)


def monotonic_groups(events: npt.ArrayLike, rows: npt.ArrayLike) -> IntArray:
    """Adjacent value bins merged until the event rate is monotonic (the direction the bins'
    rates trend in, weighted by rows); a group per bin, non-decreasing from 0."""
    e = [float(v) for v in np.asarray(events, dtype=np.float64)]
    n = [float(v) for v in np.asarray(rows, dtype=np.float64)]
    members = [[i] for i in range(len(e))]
    live = [i for i in range(len(e)) if n[i] > 0]
    if len(live) < 2:
        return np.zeros(len(e), dtype=np.int64)
    rate = np.array([e[i] / n[i] for i in live])
    pos = np.arange(len(live), dtype=np.float64)
    weight = np.array([n[i] for i in live])
    trend = np.sum(
        weight * (pos - np.average(pos, weights=weight)) * (rate - np.average(rate, weights=weight))
    )
    sign = 1.0 if trend >= 0 else -1.0
    ge, gn = list(e), list(n)
    i = 0
    while i < len(members) - 1:
        a = ge[i] / gn[i] if gn[i] > 0 else None
        b = ge[i + 1] / gn[i + 1] if gn[i + 1] > 0 else None
        if a is None or b is None or (b - a) * sign < 0:
            members[i] += members.pop(i + 1)
            ge[i] += ge.pop(i + 1)
            gn[i] += gn.pop(i + 1)
            i = max(i - 1, 0)
        else:
            i += 1
    out = np.zeros(len(e), dtype=np.int64)
    for g, idx in enumerate(members):
        out[idx] = g
    return out


def merge_counts(values: npt.ArrayLike, groups: IntArray, extra: int) -> IntArray:
    """Per-bin counts summed by group; the ``extra`` bins after the value bins kept as they are."""
    v = np.asarray(values, dtype=np.int64)
    head = np.bincount(groups, weights=v[: len(groups)], minlength=int(groups.max(initial=-1)) + 1)
    return np.concatenate([head.astype(np.int64), v[len(groups) : len(groups) + extra]])


@dataclass(frozen=True)
class ScoreScale:
    """Points scaling: ``base_score`` points at odds ``base_odds`` (non-event : event), and
    ``pdo`` more points each time the odds double. ``score = offset - factor * logit(p_event)``."""

    base_score: float = 600.0
    base_odds: float = 50.0
    pdo: float = 20.0

    @property
    def factor(self) -> float:
        return self.pdo / math.log(2.0)

    @property
    def offset(self) -> float:
        return self.base_score - self.factor * math.log(self.base_odds)

    def points(self, logit: npt.ArrayLike) -> FloatArray:
        return np.asarray(self.offset - self.factor * np.asarray(logit, dtype=np.float64))

    def to_dict(self) -> dict[str, float]:
        return {"base_score": self.base_score, "base_odds": self.base_odds, "pdo": self.pdo}

    @classmethod
    def from_dict(cls, d: Any) -> ScoreScale:
        try:
            return cls(float(d["base_score"]), float(d["base_odds"]), float(d["pdo"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"bad score scale: {exc}") from None


def woe_matrix(
    chars: Sequence[Characteristic], woe: Sequence[Sequence[float]], x: npt.ArrayLike
) -> FloatArray:
    """Every column of ``x`` replaced by its bins' WOE (column ``j`` by ``chars[j]``)."""
    data = np.asarray(x, dtype=np.float64)
    if data.ndim != 2 or data.shape[1] != len(chars) or len(woe) != len(chars):
        raise DataError(f"expected {len(chars)} characteristic columns, got shape {data.shape}")
    cols = [transform(c, w, data[:, j]) for j, (c, w) in enumerate(zip(chars, woe, strict=True))]
    return np.column_stack(cols) if cols else np.empty((data.shape[0], 0))


def points_table(
    chars: Sequence[Characteristic],
    woe: Sequence[Sequence[float]],
    coef_std: npt.ArrayLike,
    mean: npt.ArrayLike,
    scale: npt.ArrayLike,
    factor: float,
) -> list[dict[str, Any]]:
    """Scorecard points of every bin of the characteristics one party holds.

    A bin's points are ``-factor * w_j * (WOE_b - mean_j) / scale_j``: its term of the linear
    predictor (trained on the party's standardised WOE columns) in points, so that a row's total
    score is the label holder's base points plus the points of its bins in every characteristic.
    """
    w, m, s = (np.asarray(a, dtype=np.float64) for a in (coef_std, mean, scale))
    out = []
    for j, (c, values) in enumerate(zip(chars, woe, strict=True)):
        v = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0)
        pts = -factor * w[j] * (v - m[j]) / s[j]
        out.append(
            {
                "name": c.name,
                "bins": [
                    {"bin": label, "woe": float(wv), "points": float(p)}
                    for label, wv, p in zip(c.labels(), v.tolist(), pts.tolist(), strict=True)
                ],
            }
        )
    return out
