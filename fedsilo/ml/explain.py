"""Per-decision explanations: contributions to the margin, adverse reason codes, global importance.

A model kind's explainer (SecureBoost: :mod:`fedsilo.ml.treeshap`; vertical LR: its linear terms)
produces :class:`Contributions`: one column per attributed feature (or a party's total, where a
party releases nothing finer), a bias, and ``bias + values.sum(axis=1) == margin``. What may be
shown of another party's features is decided before a column is made (docs/leakage.md,
"Explanations"); this module only ranks and names.

* :func:`reason_codes` — the top ``k`` adverse reasons per row as codes from a consortium
  reason-code table (:func:`code_for`: the column's label, else its party's entry, else ``"*"``,
  else the label itself: the fallback for features whose names are not released).
* :class:`ImportanceSum` — mean ``|contribution|`` per column, per party, accumulated over chunks
  (the report's global importance).

Everything works for a single row as for many (``Contributions.row``), so an online scorer can
call the same functions per request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from fedsilo.errors import DataError

__all__ = [
    "ADVERSE",
    "Contributions",
    "ImportanceSum",
    "code_for",
    "feature_label",
    "reason_codes",
    "top_adverse",
]

#: which direction of the margin is adverse: "high" (the model scores the bad outcome, e.g.
#: default or fraud, as in every bundled data set) or "low" (it scores the good one)
ADVERSE = ("high", "low")


def feature_label(party: str, name: str, index: int, released: bool) -> str:
    """How a column is shown: ``"bureau:age"`` when ``party`` releases names, else the
    pseudonymous ``"bureau feature 3"`` (``index``: the party's own feature order, which the
    label holder already knows from training)."""
    return f"{party}:{name}" if released else f"{party} feature {index}"


@dataclass
class Contributions:
    """Per-row contributions to the margin (module docstring)."""

    labels: list[str]
    parties: list[str]
    values: np.ndarray
    bias: np.ndarray

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=np.float64)
        n = self.values.shape[0] if self.values.ndim == 2 else -1
        self.bias = np.broadcast_to(np.asarray(self.bias, dtype=np.float64), (max(n, 0),)).copy()
        if self.values.ndim != 2 or len(self.labels) != self.values.shape[1]:
            raise DataError("contributions need one labelled column per attributed feature")
        if len(self.parties) != len(self.labels):
            raise DataError("contributions need a party for every column")

    @property
    def n_rows(self) -> int:
        return int(self.values.shape[0])

    def margin(self) -> np.ndarray:
        """What the contributions add up to: the model's margin (log-odds) per row."""
        return self.bias + self.values.sum(axis=1)

    def row(self, i: int) -> Contributions:
        """Row ``i`` alone (what an online scorer explains)."""
        return Contributions(
            list(self.labels), list(self.parties), self.values[i : i + 1], self.bias[i : i + 1]
        )

    def as_dict(self, i: int) -> dict[str, float]:
        """Row ``i`` as ``{label: contribution}`` plus ``"(bias)"``."""
        out = {lab: float(v) for lab, v in zip(self.labels, self.values[i], strict=True)}
        return {**out, "(bias)": float(self.bias[i])}


def top_adverse(contribs: Contributions, k: int, adverse: str = "high") -> np.ndarray:
    """``(n_rows, k)`` column indices of the ``k`` most adverse contributions per row, most
    adverse first; -1 where fewer than ``k`` columns push the row the adverse way."""
    if adverse not in ADVERSE:
        raise DataError(f"adverse must be one of {ADVERSE}, got {adverse!r}")
    signed = contribs.values if adverse == "high" else -contribs.values
    n, m = signed.shape
    out = np.full((n, k), -1, dtype=np.int64)
    if m == 0 or k == 0:
        return out
    # stable order: the larger contribution first, ties by column order
    order = np.argsort(-signed, axis=1, kind="stable")[:, :k]
    picked = np.take_along_axis(signed, order, axis=1)
    out[:, : order.shape[1]] = np.where(picked > 0, order, -1)
    return out


def code_for(label: str, party: str, table: Mapping[str, str] | None) -> str:
    """The reason code of a column: its label's entry, else its party's (the fallback for
    features whose names are not released, and for a party's total), else ``"*"``, else the
    label itself."""
    if table:
        for key in (label, party, "*"):
            code = table.get(key)
            if code:
                return str(code)
    return label


def reason_codes(
    contribs: Contributions,
    k: int,
    table: Mapping[str, str] | None = None,
    adverse: str = "high",
) -> list[list[str | None]]:
    """The top ``k`` adverse reasons of every row as codes (None where there are fewer).

    Two columns mapping to the same code count once: the next reason moves up.
    """
    ranked = top_adverse(contribs, contribs.values.shape[1], adverse)
    pairs = zip(contribs.labels, contribs.parties, strict=True)
    codes = [code_for(lab, party, table) for lab, party in pairs]
    out: list[list[str | None]] = []
    for row in ranked:
        seen: list[str | None] = []
        for col in row:
            if col < 0 or len(seen) == k:
                break
            if codes[col] not in seen:
                seen.append(codes[col])
        out.append(seen + [None] * (k - len(seen)))
    return out


@dataclass
class ImportanceSum:
    """Mean ``|contribution|`` per column, per party, over every row added."""

    labels: list[str] = field(default_factory=list)
    parties: list[str] = field(default_factory=list)
    total: np.ndarray = field(default_factory=lambda: np.zeros(0))
    rows: int = 0

    def add(self, contribs: Contributions) -> None:
        if not self.labels:
            self.labels, self.parties = list(contribs.labels), list(contribs.parties)
            self.total = np.zeros(len(self.labels))
        elif self.labels != contribs.labels:
            raise DataError("explanations of one model changed their columns between chunks")
        self.total = self.total + np.abs(contribs.values).sum(axis=0)
        self.rows += contribs.n_rows

    def by_party(self) -> dict[str, list[tuple[str, float]]]:
        """``{party: [(label, mean |contribution|)]}``, largest first within each party."""
        out: dict[str, list[tuple[str, float]]] = {}
        mean = self.total / max(self.rows, 1)
        for lab, party, v in zip(self.labels, self.parties, mean.tolist(), strict=True):
            out.setdefault(party, []).append((lab, float(v)))
        return {p: sorted(rows, key=lambda r: -r[1]) for p, rows in out.items()}
