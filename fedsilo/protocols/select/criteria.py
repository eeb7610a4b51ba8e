"""Selection criteria: each scores a silo's own columns; ``select`` keeps what passes them all.

A :class:`Criterion` reads its keys of the accepted step and returns, for each of the silo's
columns, a score and whether it passes. Criteria that need the silo (its stored WOE result, its
model part) get their inputs through :class:`Inputs`, built by the silo side, so that this module
imports no node code. To add one, write its function and add one entry to :data:`CRITERIA`;
the schema declares its keys.

``max_vif`` and ``max_correlation`` are decided by the coordinator, which holds the correlation
matrix a ``stats`` step released: :func:`collinear_drops` chooses the columns to drop over the
whole matrix, and each silo is told only which of its own columns were dropped (the silo's
criterion reads that decision through ``inputs["dropped"]``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedsilo.errors import ProtocolError
from fedsilo.protocols.stats.profile import FloatArray, vif

__all__ = [
    "CRITERIA",
    "COLLINEARITY_KEYS",
    "Criterion",
    "Inputs",
    "Verdict",
    "choose",
    "collinear_drops",
    "correlation_drops",
    "importance_of_part",
    "vif_drops",
]


@dataclass(frozen=True)
class Verdict:
    """Per column: a score (higher is better) and whether the criterion keeps it."""

    score: dict[str, float]
    keep: dict[str, bool]


#: what a criterion may ask the silo for, by name (loaded lazily by the silo side)
Inputs = Mapping[str, Callable[[], Any]]


@dataclass(frozen=True)
class Criterion:
    #: the step key that switches it on (its value not None)
    key: str
    judge: Callable[[Mapping[str, Any], Sequence[str], Inputs], Verdict]


def _by_iv(values: Mapping[str, Any], columns: Sequence[str], inputs: Inputs) -> Verdict:
    iv: dict[str, float] = inputs["iv"]()
    missing = [c for c in columns if c not in iv]
    if missing:
        raise ProtocolError(f"select: no IV for column(s) {missing[:5]} (not binned by woe)")
    floor = float(values["min_iv"])
    return Verdict({c: iv[c] for c in columns}, {c: iv[c] >= floor for c in columns})


def _by_importance(values: Mapping[str, Any], columns: Sequence[str], inputs: Inputs) -> Verdict:
    imp: dict[str, float] = inputs["importance"]()
    floor = float(values["min_importance"])
    score = {c: float(imp.get(c, 0.0)) for c in columns}
    return Verdict(score, {c: s > floor for c, s in score.items()})


def _by_coordinator(key: str) -> Callable[[Mapping[str, Any], Sequence[str], Inputs], Verdict]:
    """A criterion the coordinator decided over the released correlation matrix: the silo keeps
    every column of its own the decision for ``key`` did not drop."""

    def judge(values: Mapping[str, Any], columns: Sequence[str], inputs: Inputs) -> Verdict:
        dropped: dict[str, list[str]] = inputs["dropped"]()
        gone = set(dropped.get(key, []))
        return Verdict(
            {c: 0.0 if c in gone else 1.0 for c in columns}, {c: c not in gone for c in columns}
        )

    return judge


#: every criterion ``select`` knows, by the step key that turns it on
CRITERIA: dict[str, Criterion] = {
    "min_iv": Criterion("min_iv", _by_iv),
    "importance": Criterion("importance", _by_importance),
    "max_vif": Criterion("max_vif", _by_coordinator("max_vif")),
    "max_correlation": Criterion("max_correlation", _by_coordinator("max_correlation")),
}

#: the criteria the coordinator decides from a ``stats`` step's correlation matrix
COLLINEARITY_KEYS = ("max_vif", "max_correlation")


def _square(labels: Sequence[str], matrix: Sequence[Sequence[float | None]]) -> FloatArray:
    r = np.asarray(
        [[np.nan if v is None else float(v) for v in row] for row in matrix], dtype=np.float64
    )
    if r.shape != (len(labels), len(labels)):
        raise ProtocolError("select: the correlation matrix does not match its columns")
    if not np.isfinite(r).all():
        raise ProtocolError(
            "select: the stats step's correlation matrix is incomplete (an entry was not "
            "released), so collinearity cannot be judged"
        )
    return r


def vif_drops(
    labels: Sequence[str], matrix: Sequence[Sequence[float | None]], threshold: float
) -> list[str]:
    """The standard backward procedure: while the largest variance inflation factor (the
    diagonal of the inverse correlation matrix of the columns left) exceeds ``threshold``, drop
    that column (the first of equals in matrix order) and recompute. Returns the dropped labels,
    in the order they were dropped."""
    r = _square(labels, matrix)
    left = list(range(len(labels)))
    dropped: list[str] = []
    while len(left) > 1:
        values = vif(r[np.ix_(left, left)])
        worst = int(np.argmax(values))
        if not values[worst] > threshold:
            break
        dropped.append(labels[left.pop(worst)])
    return dropped


def correlation_drops(
    labels: Sequence[str], matrix: Sequence[Sequence[float | None]], threshold: float
) -> list[str]:
    """Of each pair of columns whose ``|Pearson|`` exceeds ``threshold``, drop the later one
    in matrix order (a column already dropped no longer removes others)."""
    r = np.abs(_square(labels, matrix))
    kept: list[int] = []
    dropped: list[str] = []
    for j in range(len(labels)):
        if any(r[i, j] > threshold for i in kept):
            dropped.append(labels[j])
        else:
            kept.append(j)
    return dropped


def collinear_drops(
    values: Mapping[str, Any], labels: Sequence[str], matrix: Sequence[Sequence[float | None]]
) -> dict[str, list[str]]:
    """What the coordinator decides for each collinearity criterion the step gives (labels of
    the stats step's matrix): ``max_correlation`` first, then ``max_vif`` over what it left."""
    out: dict[str, list[str]] = {}
    left = list(range(len(labels)))
    if values.get("max_correlation") is not None:
        out["max_correlation"] = correlation_drops(labels, matrix, float(values["max_correlation"]))
        gone = set(out["max_correlation"])
        left = [i for i, label in enumerate(labels) if label not in gone]
    if values.get("max_vif") is not None:
        sub = [[matrix[i][j] for j in left] for i in left]
        out["max_vif"] = vif_drops([labels[i] for i in left], sub, float(values["max_vif"]))
    return out


def choose(values: Mapping[str, Any], columns: Sequence[str], inputs: Inputs) -> list[str]:
    """The columns every criterion keeps (in their order), cut to ``top_k`` by the first
    criterion's score, topped up to ``keep_at_least`` with the best of the rest."""
    verdicts = [
        c.judge(values, columns, inputs) for c in CRITERIA.values() if values.get(c.key) is not None
    ]
    if not verdicts:
        raise ProtocolError("select: no criterion given")
    rank = verdicts[0].score
    order = sorted(columns, key=lambda c: -rank[c])
    kept = [c for c in order if all(v.keep[c] for v in verdicts)]
    if values.get("top_k") is not None:
        kept = kept[: int(values["top_k"])]
    floor = min(int(values["keep_at_least"]), len(columns))
    kept += [c for c in order if c not in kept][: max(0, floor - len(kept))]
    return [c for c in columns if c in kept]


def importance_of_part(kind: str, payload: Mapping[str, Any]) -> dict[str, float]:
    """Importance of this silo's own columns from its part of a model: vertical LR
    ``|standardised coefficient|``, SecureBoost the number of splits on the column."""
    columns = [str(c) for c in payload.get("columns", [])]
    try:
        if kind == "lr":
            coef = np.abs(np.asarray(payload["part"]["standardised"]["coef"], dtype=np.float64))
            return dict(zip(columns, coef.tolist(), strict=True))
        if kind == "secureboost":
            table = payload["part"] if "part" in payload else payload["model"]["own_splits"]
            counts = np.bincount(
                [int(s[2]) for s in table["splits"]], minlength=len(columns)
            ).astype(np.float64)
            return dict(zip(columns, counts[: len(columns)].tolist(), strict=True))
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"select: cannot read the {kind} model part: {exc}") from None
    raise ProtocolError(f"select: no importance for model kind '{kind}'")
