"""Selection criteria: each scores a silo's own columns; ``select`` keeps what passes them all.

A :class:`Criterion` reads its keys of the accepted step and returns, for each of the silo's
columns, a score and whether it passes. Criteria that need the silo (its stored WOE result, its
model part) get their inputs through :class:`Inputs`, built by the silo side, so that this module
imports no node code. To add one (e.g. ``max_vif`` from a ``stats`` step), write its function
and add one entry to :data:`CRITERIA`; the schema declares its keys.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedsilo.errors import ProtocolError

__all__ = ["CRITERIA", "Criterion", "Inputs", "Verdict", "choose", "importance_of_part"]


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


#: every criterion ``select`` knows, by the step key that turns it on
CRITERIA: dict[str, Criterion] = {
    "min_iv": Criterion("min_iv", _by_iv),
    "importance": Criterion("importance", _by_importance),
}


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
