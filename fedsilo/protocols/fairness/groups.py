"""The attribute holder's groups: which rows fall in which protected group, and which groups it
may release at all.

A *grouping* is one attribute column (``SEX``) or an intersection of several (``SEX & AGE``); a
numeric column with band edges in the step is cut into bands (``AGE in [25, 35)``), any other
column groups by value. Every row belongs to exactly one group of each grouping. A group with
fewer rows than the holder's ``min_rows_per_statistic`` is withheld: it gets no slot, so nothing
about it is ever encrypted, let alone released. Within a grouping the holder also withholds the
next smallest groups until the withheld rows together reach the minimum (or nothing is left):
otherwise the one small group would follow from the total minus the released ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from fedsilo.errors import DataError

__all__ = ["GroupPlan", "Slot", "band_label", "groupings", "plan_groups"]

#: label of the rows whose attribute is NULL
MISSING = "missing"


@dataclass(frozen=True)
class Slot:
    """One released group: its grouping, its label, how many aligned rows it has."""

    grouping: str
    label: str
    rows: int


@dataclass(frozen=True)
class GroupPlan:
    """The released groups (slot order) and, per row and grouping, its slot (-1: withheld)."""

    slots: tuple[Slot, ...]
    #: (rows, groupings) int32: slot index of each row's group, -1 where it is withheld
    row_slots: np.ndarray
    #: grouping name -> how many of its groups are withheld
    withheld: dict[str, int]


def groupings(
    attributes: Sequence[str], intersections: Sequence[Sequence[str]]
) -> list[tuple[str, ...]]:
    """Each attribute alone, then each intersection (as given), without repeats."""
    out: list[tuple[str, ...]] = []
    for g in [(a,) for a in attributes] + [tuple(i) for i in intersections]:
        if g not in out:
            out.append(g)
    return out


def band_label(column: str, edges: Sequence[float], band: int) -> str:
    """``AGE < 25``, ``AGE in [25, 35)``, ``AGE >= 65`` for band ``band`` of ``edges``."""
    if band == 0:
        return f"{column} < {edges[0]:g}"
    if band == len(edges):
        return f"{column} >= {edges[-1]:g}"
    return f"{column} in [{edges[band - 1]:g}, {edges[band]:g})"


def _codes(
    column: str, values: np.ndarray, edges: Sequence[float] | None
) -> tuple[np.ndarray, list[str]]:
    """Per row a code, and the label of each code, for one column (NULL is its own group)."""
    missing = np.isnan(values)
    if edges is not None:
        codes = np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="right")
        labels = [band_label(column, edges, b) for b in range(len(edges) + 1)]
    else:
        uniq = np.unique(values[~missing])
        codes = np.searchsorted(uniq, values)
        labels = [f"{column}={v:g}" for v in uniq]
    codes = np.where(missing, len(labels), codes)
    return codes.astype(np.int64), [*labels, f"{column} {MISSING}"]


def _suppress(counts: np.ndarray, min_rows: int) -> np.ndarray:
    """Which groups are released: at least ``min_rows`` rows each, and the withheld rows together
    at least ``min_rows`` when any are withheld (else the smallest released ones go too)."""
    released = counts >= min_rows
    present = counts > 0
    order = [int(i) for i in np.argsort(counts, kind="stable") if released[i]]
    while order and 0 < int(counts[present & ~released].sum()) < min_rows:
        released[order.pop(0)] = False
    return released & present


def plan_groups(
    columns: Mapping[str, np.ndarray],
    groups: Sequence[tuple[str, ...]],
    bands: Mapping[str, Sequence[float]],
    min_rows: int,
) -> GroupPlan:
    """The released groups of every grouping over the aligned rows (``columns``: one array each)."""
    coded = {}
    for col, values in columns.items():
        edges = bands.get(col)
        if edges is not None and list(edges) != sorted(set(edges)):
            raise DataError(f"band edges of '{col}' must be strictly increasing")
        coded[col] = _codes(col, np.asarray(values, dtype=np.float64), edges)
    rows = len(next(iter(columns.values()))) if columns else 0
    slots: list[Slot] = []
    row_slots = np.full((rows, len(groups)), -1, dtype=np.int32)
    withheld: dict[str, int] = {}
    for k, grouping in enumerate(groups):
        name = " & ".join(grouping)
        key = np.zeros(rows, dtype=np.int64)
        for col in grouping:
            key = key * (len(coded[col][1])) + coded[col][0]
        uniq, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
        released = _suppress(counts, min_rows)
        withheld[name] = int((~released).sum())
        for j in np.flatnonzero(released):
            parts, rest = [], int(uniq[j])
            for col in reversed(grouping):
                size = len(coded[col][1])
                parts.append(coded[col][1][rest % size])
                rest //= size
            row_slots[inverse == j, k] = len(slots)
            slots.append(Slot(name, " & ".join(reversed(parts)), int(counts[j])))
    return GroupPlan(tuple(slots), row_slots, withheld)
