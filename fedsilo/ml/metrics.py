"""Evaluation metrics for binary scores, as plain numpy functions.

Everything here runs at the label holder on ``(y_true, score)`` arrays: ``y_true`` holds 0/1
labels, ``score`` a number that is higher for the positive class (a probability for the
calibration functions). No function needs a network, a model or scikit-learn; the tests check
the results against scikit-learn and SciPy.

Disclosure guard
----------------
A silo's policy sets ``min_rows_per_statistic``: a released number must rest on at least that
many records, otherwise it says too much about a few people. :func:`evaluate` applies it as
follows, and puts ``None`` (plus the statistic's name in ``"withheld"``) wherever it bites:

- AUC and KS are rank statistics over both classes, so the *smaller class* must reach
  ``min_rows`` (an AUC over one positive is that person's rank).
- A lift decile, a calibration bin or a threshold row rests on the rows it covers; it is withheld
  whole when they are fewer than ``min_rows``.
- Curves (ROC, KS) are coarsened so that consecutive points are at least ``min_rows`` rows apart:
  a full-resolution ROC curve spells out every row's label in score order.

This guard stops statistics *about a handful of records*; it is not full statistical disclosure
control (differences between released aggregates can still isolate a small cell, e.g. a withheld
calibration bin from the base rate and the other bins). The leakage table states this.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fedsilo import settings
from fedsilo.errors import DataError
from fedsilo.settings import DEFAULT_MIN_ROWS_PER_STATISTIC

__all__ = [
    "DEFAULT_BINS",
    "DEFAULT_MAX_CURVE_POINTS",
    "DEFAULT_THRESHOLDS",
    "Curve",
    "auc",
    "brier_score",
    "calibration_bins",
    "curve_points",
    "curve_to_json",
    "evaluate",
    "expected_calibration_error",
    "ks",
    "lift_table",
    "precision_at_review",
    "precision_recall_at",
    "roc_curve",
]

#: precision/recall thresholds, lift/calibration bins and curve points used when the caller
#: names none: ``settings.METRICS_*`` (documented there).
DEFAULT_THRESHOLDS: tuple[float, ...] = settings.METRICS_DEFAULT_THRESHOLDS
DEFAULT_BINS: int = settings.METRICS_DEFAULT_BINS
DEFAULT_MAX_CURVE_POINTS: int = settings.METRICS_MAX_CURVE_POINTS
DEFAULT_REVIEW_RATES: tuple[float, ...] = settings.METRICS_REVIEW_RATES

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Curve:
    """Cumulative counts at every distinct threshold, highest score first.

    Point ``i`` flags every row with ``score >= thresholds[i]``; point 0 flags nobody and has
    threshold ``+inf`` (as scikit-learn's ``roc_curve``).
    """

    thresholds: FloatArray
    tp: IntArray
    fp: IntArray

    @property
    def positives(self) -> int:
        return int(self.tp[-1])

    @property
    def negatives(self) -> int:
        return int(self.fp[-1])

    @property
    def tpr(self) -> FloatArray:
        return self.tp / max(self.positives, 1)

    @property
    def fpr(self) -> FloatArray:
        return self.fp / max(self.negatives, 1)


# --- input ---------------------------------------------------------------------------------------


def _check(y_true: npt.ArrayLike, score: npt.ArrayLike) -> tuple[IntArray, FloatArray]:
    """Validate once, so every metric can assume clean 1-D arrays of equal length."""
    y = np.asarray(y_true)
    s = np.asarray(score, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1 or y.shape != s.shape:
        raise DataError(
            f"labels and scores must be 1-D of equal length, got {y.shape} and {s.shape}"
        )
    if y.size and not np.isin(y, (0, 1)).all():
        raise DataError("labels must be 0 or 1")
    if not np.isfinite(s).all():
        raise DataError("scores must be finite numbers")
    return y.astype(np.int64), s


def _require_both_classes(y: IntArray) -> None:
    if y.size == 0 or y.min() == y.max():
        raise DataError("a metric over labels needs both classes present")


def _is_probability(s: FloatArray) -> bool:
    return bool(s.size) and float(s.min()) >= 0.0 and float(s.max()) <= 1.0


# --- ranking metrics -----------------------------------------------------------------------------


def roc_curve(y_true: npt.ArrayLike, score: npt.ArrayLike) -> Curve:
    """Exact, tie-aware ROC counts: rows with equal scores move together (one point per value).

    Equal to scikit-learn's ``roc_curve(..., drop_intermediate=False)``.
    """
    y, s = _check(y_true, score)
    _require_both_classes(y)
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last_of_value = np.r_[np.flatnonzero(np.diff(s_sorted)), s_sorted.size - 1]
    tp = np.cumsum(y_sorted)[last_of_value]
    fp = (last_of_value + 1) - tp
    return Curve(
        thresholds=np.r_[np.inf, s_sorted[last_of_value]],
        tp=np.r_[0, tp].astype(np.int64),
        fp=np.r_[0, fp].astype(np.int64),
    )


def auc(y_true: npt.ArrayLike, score: npt.ArrayLike) -> float:
    """Area under the ROC curve via the Mann-Whitney U statistic with average ranks for ties.

    A tie between a positive and a negative counts one half, which is what the trapezoid over
    the tie-aware ROC curve gives (and what ``sklearn.metrics.roc_auc_score`` returns).
    """
    y, s = _check(y_true, score)
    _require_both_classes(y)
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)
    avg_rank = upper - (counts - 1) / 2.0  # 1-based average rank of each distinct value
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    rank_sum = float(avg_rank[inverse][y == 1].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def ks(y_true: npt.ArrayLike, score: npt.ArrayLike) -> tuple[float, float]:
    """Kolmogorov-Smirnov statistic between the classes' score distributions, and where it peaks.

    Returns ``(ks, threshold)``: the largest gap ``|TPR - FPR|`` over all thresholds "flag when
    ``score >= threshold``", the usual separation measure in credit scoring (equal to SciPy's
    two-sample ``ks_2samp`` statistic).
    """
    curve = roc_curve(y_true, score)
    gap = np.abs(curve.tpr - curve.fpr)
    best = int(np.argmax(gap))
    return float(gap[best]), float(curve.thresholds[max(best, 1)])


def curve_points(curve: Curve, *, min_rows: int, max_points: int) -> Curve:
    """Thin a curve so consecutive kept points are at least ``min_rows`` rows apart.

    Also keeps at most about ``max_points`` points. The first (nobody flagged) and last
    (everybody flagged) points are always kept; ties are never split, because points exist only
    between distinct scores.
    """
    flagged = curve.tp + curve.fp
    n = int(flagged[-1])
    step = max(min_rows, math.ceil(n / max(max_points - 1, 1)), 1)
    keep = [0]
    for i in range(1, flagged.size - 1):
        if flagged[i] - flagged[keep[-1]] >= step and n - flagged[i] >= step:
            keep.append(i)
    keep.append(flagged.size - 1)
    idx = np.asarray(keep)
    return Curve(thresholds=curve.thresholds[idx], tp=curve.tp[idx], fp=curve.fp[idx])


# --- tables --------------------------------------------------------------------------------------


def lift_table(
    y_true: npt.ArrayLike, score: npt.ArrayLike, *, bins: int = DEFAULT_BINS, min_rows: int = 1
) -> list[dict[str, Any]]:
    """Lift and cumulative gain by score decile (``bins`` groups), highest scores first.

    Rows with equal scores always land in the same group (the group of their average rank), so
    the table does not depend on row order; with heavy ties some groups are larger or empty.
    A group over fewer than ``min_rows`` rows is withheld: every number but its index is None,
    cumulative ones included (the difference of two cumulatives would reveal it).
    """
    y, s = _check(y_true, score)
    _require_both_classes(y)
    group = _rank_groups(s, bins)
    counts = np.bincount(group, minlength=bins)
    positives = np.bincount(group, weights=y, minlength=bins).astype(np.int64)
    cum_n, cum_pos = np.cumsum(counts), np.cumsum(positives)
    base_rate, total_pos = float(y.mean()), int(y.sum())
    rows: list[dict[str, Any]] = []
    for g in range(bins):
        row: dict[str, Any] = {"decile": g + 1, **dict.fromkeys(_LIFT_KEYS)}
        if counts[g] >= max(min_rows, 1):
            rate = float(positives[g] / counts[g])
            in_group = s[group == g]
            row.update(zip(_LIFT_KEYS, (
                int(counts[g]), int(positives[g]), rate, rate / base_rate,
                float(cum_pos[g] / total_pos), float(cum_pos[g] / cum_n[g] / base_rate),
                float(in_group.min()), float(in_group.max()),
            ), strict=True))  # fmt: skip
        rows.append(row)
    return rows


_LIFT_KEYS = ("rows", "positives", "rate", "lift", "cum_gain", "cum_lift", "score_min",
              "score_max")  # fmt: skip


def _rank_groups(s: FloatArray, bins: int) -> IntArray:
    """Group index per row: ``bins`` equal slices of the descending order, ties kept together."""
    _, inverse, counts = np.unique(-s, return_inverse=True, return_counts=True)
    start = np.cumsum(counts) - counts  # 0-based first position of each value, descending
    middle = start + (counts - 1) / 2.0
    group = np.floor(middle * bins / s.size).astype(np.int64)
    return np.minimum(group, bins - 1)[inverse]


def precision_recall_at(
    y_true: npt.ArrayLike, score: npt.ArrayLike, thresholds: Sequence[float], *, min_rows: int = 1
) -> list[dict[str, Any]]:
    """Confusion counts, precision, recall and F1 when flagging ``score >= t``, for each ``t``.

    A row is withheld (all but ``threshold`` None) when either the flagged or the unflagged set
    is smaller than ``min_rows``: either set's label counts follow from the other's and the totals.
    Precision of an empty flagged set is None rather than 0/0.
    """
    y, s = _check(y_true, score)
    n_pos = int(y.sum())
    rows: list[dict[str, Any]] = []
    for t in thresholds:
        flag = s >= t
        n_flag = int(flag.sum())
        row: dict[str, Any] = {"threshold": float(t), **dict.fromkeys(_PR_KEYS)}
        if min(n_flag, y.size - n_flag) >= min_rows:
            tp = int(y[flag].sum())
            fp, fn = n_flag - tp, n_pos - tp
            row.update(zip(_PR_KEYS, (
                n_flag, tp, fp, fn, y.size - n_flag - fn,
                tp / n_flag if n_flag else None,
                tp / n_pos if n_pos else None,
                2 * tp / (2 * tp + fp + fn) if (tp + fp + fn) else None,
            ), strict=True))  # fmt: skip
        rows.append(row)
    return rows


_PR_KEYS = ("flagged", "tp", "fp", "fn", "tn", "precision", "recall", "f1")


def precision_at_review(
    y_true: npt.ArrayLike, score: npt.ArrayLike, rates: Sequence[float], *, min_rows: int = 1
) -> list[dict[str, Any]]:
    """Precision and recall when a team reviews the top ``rate`` share of rows by score.

    ``ceil(rate * rows)`` rows are reviewed, highest score first (ties in row order), which is
    how a fraud team works a queue. A row is withheld (all but ``rate`` None) when the reviewed
    or the unreviewed set is smaller than ``min_rows``, as in :func:`precision_recall_at`.
    """
    y, s = _check(y_true, score)
    n_pos = int(y.sum())
    caught = np.cumsum(y[np.argsort(-s, kind="mergesort")])
    rows: list[dict[str, Any]] = []
    for rate in rates:
        k = min(int(math.ceil(rate * y.size)), y.size)
        row: dict[str, Any] = {"rate": float(rate), **dict.fromkeys(_REVIEW_KEYS)}
        if min(k, y.size - k) >= max(min_rows, 1):
            tp = int(caught[k - 1])
            row.update(reviewed=k, tp=tp, precision=tp / k, recall=tp / n_pos if n_pos else None)
        rows.append(row)
    return rows


_REVIEW_KEYS = ("reviewed", "tp", "precision", "recall")


# --- calibration ---------------------------------------------------------------------------------


def calibration_bins(
    y_true: npt.ArrayLike, prob: npt.ArrayLike, *, bins: int = DEFAULT_BINS, min_rows: int = 1
) -> list[dict[str, Any]]:
    """Reliability diagram: ``bins`` equal-width probability bins with mean prediction vs outcome.

    Bin edges and membership follow ``sklearn.calibration.calibration_curve(strategy="uniform")``;
    unlike it, empty bins are kept (withheld) so the table always has ``bins`` rows.
    """
    y, p = _check(y_true, prob)
    if not _is_probability(p):
        raise DataError("calibration needs probabilities in [0, 1]")
    edges = np.linspace(0.0, 1.0, bins + 1)
    ids = np.searchsorted(edges[1:-1], p)
    counts = np.bincount(ids, minlength=bins)
    sum_p = np.bincount(ids, weights=p, minlength=bins)
    sum_y = np.bincount(ids, weights=y, minlength=bins)
    rows: list[dict[str, Any]] = []
    for b in range(bins):
        row: dict[str, Any] = {
            "lower": float(edges[b]),
            "upper": float(edges[b + 1]),
            "rows": None,
            "mean_predicted": None,
            "observed_rate": None,
        }
        if counts[b] >= max(min_rows, 1):
            row.update(
                rows=int(counts[b]),
                mean_predicted=float(sum_p[b] / counts[b]),
                observed_rate=float(sum_y[b] / counts[b]),
            )
        rows.append(row)
    return rows


def brier_score(y_true: npt.ArrayLike, prob: npt.ArrayLike) -> float:
    """Mean squared error of the probabilities (``sklearn.metrics.brier_score_loss``)."""
    y, p = _check(y_true, prob)
    if not _is_probability(p):
        raise DataError("the Brier score needs probabilities in [0, 1]")
    return float(np.mean((p - y) ** 2))


def expected_calibration_error(
    y_true: npt.ArrayLike, prob: npt.ArrayLike, *, bins: int = DEFAULT_BINS
) -> float:
    """Row-weighted mean ``|mean prediction - observed rate|`` over the uniform bins.

    One number over all rows, so it is released even when single bins are withheld.
    """
    rows = calibration_bins(y_true, prob, bins=bins, min_rows=1)
    n = sum(r["rows"] for r in rows if r["rows"] is not None)
    return float(
        sum(
            r["rows"] * abs(r["mean_predicted"] - r["observed_rate"])
            for r in rows
            if r["rows"] is not None
        )
        / n
    )


# --- the whole evaluation ------------------------------------------------------------------------


def evaluate(
    y_true: npt.ArrayLike,
    score: npt.ArrayLike,
    *,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    min_rows: int = DEFAULT_MIN_ROWS_PER_STATISTIC,
    bins: int = DEFAULT_BINS,
    max_curve_points: int = DEFAULT_MAX_CURVE_POINTS,
    review_rates: Sequence[float] = DEFAULT_REVIEW_RATES,
) -> dict[str, Any]:
    """Every metric of the evaluation report as one JSON-serialisable dict (no NaN, no numpy).

    Keys: ``rows``, ``positives``, ``base_rate``, ``min_rows``, ``auc``, ``ks``,
    ``ks_threshold``, ``roc`` (coarsened points: ``threshold``, ``fpr``, ``tpr``), ``lift``,
    ``precision_recall``, ``review`` (precision at review rates), ``calibration`` (``bins``,
    ``brier``, ``ece``; None unless the scores are probabilities) and ``withheld`` (names of the
    statistics the guard suppressed).
    See the module docstring for the guard.
    """
    y, s = _check(y_true, score)
    n, n_pos = int(y.size), int(y.sum())
    out: dict[str, Any] = {
        "rows": None,
        "positives": None,
        "base_rate": None,
        "min_rows": min_rows,
        "auc": None,
        "ks": None,
        "ks_threshold": None,
        "roc": None,
        "lift": None,
        "precision_recall": None,
        "review": None,
        "calibration": None,
        "withheld": [],
    }
    if n < max(min_rows, 1):
        out["withheld"] = ["everything"]
        return out
    out.update(rows=n, positives=n_pos, base_rate=n_pos / n)
    out["precision_recall"] = precision_recall_at(y, s, thresholds, min_rows=min_rows)
    out["review"] = precision_at_review(y, s, review_rates, min_rows=min_rows)
    if min(n_pos, n - n_pos) >= max(min_rows, 1):
        out.update(
            _ranking_metrics(y, s, min_rows=min_rows, bins=bins, max_curve_points=max_curve_points)
        )
    else:
        out["withheld"] += ["auc", "ks", "roc", "lift"]
    if _is_probability(s):
        cal = calibration_bins(y, s, bins=bins, min_rows=min_rows)
        out["calibration"] = {
            "bins": cal,
            "brier": brier_score(y, s),
            "ece": expected_calibration_error(y, s, bins=bins),
        }
        out["withheld"] += [f"calibration bin {i + 1}" for i, r in _gaps(cal, "rows")]
    out["withheld"] += [f"lift decile {i + 1}" for i, _ in _gaps(out["lift"] or [], "rows")]
    out["withheld"] += [
        f"precision/recall at {r['threshold']:g}"
        for _, r in _gaps(out["precision_recall"], "flagged")
    ]
    out["withheld"] += [
        f"precision at review {r['rate']:g}" for _, r in _gaps(out["review"], "reviewed")
    ]
    return out


def _gaps(rows: list[dict[str, Any]], key: str) -> list[tuple[int, dict[str, Any]]]:
    """The rows of a table the guard withheld (marked by ``key`` being None)."""
    return [(i, r) for i, r in enumerate(rows) if r[key] is None]


def _ranking_metrics(
    y: IntArray, s: FloatArray, *, min_rows: int, bins: int, max_curve_points: int
) -> dict[str, Any]:
    """AUC, KS, the coarsened ROC curve and the lift table (both classes are big enough)."""
    curve = roc_curve(y, s)
    ks_value, ks_threshold = ks(y, s)
    return {
        "auc": auc(y, s),
        "ks": ks_value,
        "ks_threshold": ks_threshold,
        "roc": curve_to_json(curve_points(curve, min_rows=min_rows, max_points=max_curve_points)),
        "lift": lift_table(y, s, bins=bins, min_rows=min_rows),
    }


def curve_to_json(curve: Curve) -> dict[str, list[float | None]]:
    """Column lists for JSON; the infinite first threshold ("flag nobody") becomes None."""
    return {
        "threshold": [None if math.isinf(t) else float(t) for t in curve.thresholds],
        "fpr": [float(v) for v in curve.fpr],
        "tpr": [float(v) for v in curve.tpr],
    }
