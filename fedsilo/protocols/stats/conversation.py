"""The ``stats`` message order, written once, and the matrix the coordinator assembles.

1. ``stats.profile`` at every silo: per-column statistics and within-silo correlations
   (released meta), how many columns each puts in the matrix.
2. The silos are ordered by that count, most first (ties by name). Each silo but the last
   encrypts its columns once (``stats.encrypt``) for every silo after it; each silo but the
   first multiplies in the ciphertexts of every silo before it (``stats.cross``); each silo but
   the last opens what came back (``stats.open``) and releases its cross-silo blocks. The silo
   with the most columns encrypts, so the multi-exponentiation (per evaluator column) is the
   smaller side.

:func:`assemble` then puts the released blocks into one matrix over ``party.column`` labels and
derives the variance inflation factors; it is a function of released values only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fedsilo.errors import JobError
from fedsilo.protocols.conversation import Parties, Reply
from fedsilo.protocols.stats.profile import vif

__all__ = ["assemble", "order", "run"]


def order(counts: Mapping[str, int]) -> list[str]:
    """Silos with columns to correlate, most columns first (ties by name)."""
    return sorted((p for p, c in counts.items() if c > 0), key=lambda p: (-counts[p], p))


def run(parties: Parties, names: Sequence[str], *, correlate: bool) -> dict[str, Any]:
    """Run the step over ``parties`` (the silos ``names``); the step's result."""
    profiles = parties.call_many({p: ("stats.profile", {}, ()) for p in names})
    blocks: dict[str, Mapping[str, Any]] = {}
    if correlate:
        ranked = order({p: len(r.meta.get("correlated", [])) for p, r in profiles.items()})
        blocks = _cross(parties, ranked)
    return assemble({p: r.meta for p, r in profiles.items()}, blocks)


def _cross(parties: Parties, ranked: list[str]) -> dict[str, Mapping[str, Any]]:
    if len(ranked) < 2:
        return {}
    encrypted: dict[str, Reply] = parties.call_many(
        {p: ("stats.encrypt", {"to": ranked[i + 1 :]}, ()) for i, p in enumerate(ranked[:-1])}
    )
    crossed = parties.call_many(
        {
            q: ("stats.cross", {"from": ranked[:i]}, [encrypted[p] for p in ranked[:i]])
            for i, q in enumerate(ranked)
            if i > 0
        }
    )
    opened = parties.call_many(
        {
            p: ("stats.open", {"from": ranked[i + 1 :]}, [crossed[q] for q in ranked[i + 1 :]])
            for i, p in enumerate(ranked[:-1])
        }
    )
    return {p: r.meta.get("blocks", {}) for p, r in opened.items()}


def assemble(
    profiles: Mapping[str, Mapping[str, Any]], blocks: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """The step's result: statistics per ``party.column``, the matrix and the VIFs.

    ``profiles``: each silo's ``stats.profile`` meta; ``blocks``: each encrypting silo's
    ``stats.open`` meta blocks, ``{evaluator: rows (its columns) × columns (theirs)}``. A matrix
    entry nobody released (a population without aligned rows) stays ``None``; VIFs need the
    whole matrix.
    """
    rows = {p: m.get("rows") for p, m in profiles.items()}
    columns = {
        f"{p}.{c}": s for p in sorted(profiles) for c, s in profiles[p].get("columns", {}).items()
    }
    labels = [f"{p}.{c}" for p in sorted(profiles) for c in profiles[p].get("correlated", [])]
    out: dict[str, Any] = {"rows": rows, "columns": columns}
    excluded = {
        f"{p}.{c}": why
        for p in sorted(profiles)
        for c, why in profiles[p].get("excluded", {}).items()
    }
    if not labels and not excluded:
        return out
    index = {label: i for i, label in enumerate(labels)}
    matrix: list[list[float | None]] = [[None] * len(labels) for _ in labels]
    for p, meta in profiles.items():
        _place(
            matrix,
            index,
            p,
            meta.get("correlated", []),
            p,
            meta.get("correlated", []),
            meta.get("local", []),
        )
    for p, by_evaluator in blocks.items():
        for q, block in by_evaluator.items():
            mine = profiles[p].get("correlated", [])
            theirs = profiles.get(q, {}).get("correlated", [])
            if q not in profiles:
                raise JobError(f"silo '{p}' released a correlation block with unknown silo '{q}'")
            _place(matrix, index, p, mine, q, theirs, block)
    out["correlation"] = {"columns": labels, "matrix": matrix, "excluded": excluded}
    complete = all(v is not None for row in matrix for v in row)
    values = vif(np.asarray(matrix, dtype=np.float64)) if complete and labels else None
    out["vif"] = (
        {label: _finite(v) for label, v in zip(labels, values.tolist(), strict=True)}
        if values is not None
        else None
    )
    return out


def _finite(value: float) -> float | None:
    """JSON has no infinity: a singular matrix's VIF is recorded as None (unbounded)."""
    return value if np.isfinite(value) else None


def _place(
    matrix: list[list[float | None]],
    index: Mapping[str, int],
    p: str,
    mine: Sequence[str],
    q: str,
    theirs: Sequence[str],
    block: Sequence[Sequence[float]],
) -> None:
    if len(block) != len(mine) or any(len(row) != len(theirs) for row in block):
        raise JobError(f"correlation block of '{p}' with '{q}' does not match their columns")
    for a, row in zip(mine, block, strict=True):
        for b, value in zip(theirs, row, strict=True):
            i, j = index[f"{p}.{a}"], index[f"{q}.{b}"]
            matrix[i][j] = matrix[j][i] = float(value)
