"""Comparing doubly blinded values as fixed-width numbers, and shuffling without a Python loop.

A doubly blinded point is pseudo-random, so its first 16 bytes (a :data:`Fingerprint`, viewed as
two ``uint64``) identify it: two distinct ids collide with probability ~n·m/2^128. Matching sorts
the two sets together once (by the first 64 bits, see :func:`_sorted`) and pairs equal
neighbours: O((n+m) log(n+m)), no Python sets, about 33 bytes per id at the peak (:func:`match`).
"""

from __future__ import annotations

import numpy as np
from nacl.bindings import randombytes_buf_deterministic

from fedsilo.errors import ProtocolError

__all__ = [
    "FP_BYTES",
    "DuplicateValues",
    "fingerprints",
    "has_duplicates",
    "match",
    "seeded_permutation",
    "take_halves",
    "value_order",
]

FP_BYTES = 16


def fingerprints(points: np.ndarray) -> np.ndarray:
    """The first 16 bytes of each ``(n, >=16) uint8`` row as an ``(n, 2) uint64`` copy."""
    head = np.ascontiguousarray(points[:, :FP_BYTES])
    return head.view(np.uint64).reshape(-1, 2).copy()


def check_fingerprints(fp: np.ndarray) -> np.ndarray:
    """A peer's fingerprints as ``(n, 16) uint8`` on the wire, returned as ``(n, 2) uint64``."""
    if fp.dtype != np.uint8 or fp.ndim != 2 or fp.shape[1] != FP_BYTES:
        raise ProtocolError(f"PSI fingerprints must be (n, {FP_BYTES}) uint8, got {fp.shape}")
    return fingerprints(fp)


#: rows compared per slice when looking for equal neighbours, so that no full sorted copy of the
#: values is ever made (16 bytes per row less at the leader's peak)
_SLICE_ROWS = 1 << 20


def _neighbours(hi: np.ndarray, lo: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, ...]:
    """For rows in ``order``: whether each row's ``hi`` equals the next one's, and whether both
    halves do, computed slice by slice."""
    n = max(len(order) - 1, 0)
    head_eq, eq = np.empty(n, dtype=bool), np.empty(n, dtype=bool)
    for start in range(0, n, _SLICE_ROWS):
        idx = order[start : start + _SLICE_ROWS + 1]
        h, low = hi[idx], lo[idx]
        part = slice(start, start + len(idx) - 1)
        head_eq[part] = h[1:] == h[:-1]
        eq[part] = head_eq[part] & (low[1:] == low[:-1])
    return head_eq, eq


def _sorted(hi: np.ndarray, lo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(order, eq)`` for the rows ``(hi, lo)``: an order that puts equal rows together, and
    which neighbours in it are equal.

    Sorting by ``hi`` alone is ~8x faster than a two-key ``lexsort``. It is exact unless two
    *different* rows share their ``hi`` (probability ~n^2/2^65, about 1e-7 for 2M rows): then,
    and only then, the two-key sort runs.
    """
    order = np.argsort(hi)
    head_eq, eq = _neighbours(hi, lo, order)
    if not np.array_equal(head_eq, eq):
        order = np.lexsort((lo, hi))
        eq = _neighbours(hi, lo, order)[1]
    return order, eq


def has_duplicates(hi: np.ndarray, lo: np.ndarray) -> bool:
    """Whether two rows ``(hi, lo)`` are equal (two equal ids give equal values)."""
    return bool(len(hi) > 1 and _sorted(hi, lo)[1].any())


def _word(parts: list[np.ndarray], k: int) -> np.ndarray:
    """The ``k``-th ``uint64`` of every row of ``(n_i, 32) uint8`` parts, as one array."""
    out = np.empty(sum(len(p) for p in parts), np.uint64)
    at = 0
    for part in parts:
        word = np.ascontiguousarray(part[:, 8 * k : 8 * k + 8])
        out[at : at + len(part)] = word.view(np.uint64)[:, 0]
        at += len(part)
    return out


def _any_equal_neighbours(keys: np.ndarray, order: np.ndarray) -> bool:
    """Whether two rows next to each other in ``order`` have equal ``keys`` (slice by slice)."""
    for start in range(0, max(len(order) - 1, 0), _SLICE_ROWS):
        k = keys[order[start : start + _SLICE_ROWS + 1]]
        if (k[1:] == k[:-1]).any():
            return True
    return False


def value_order(parts: list[np.ndarray]) -> np.ndarray:
    """The positions of the rows of ``(n_i, 32) uint8`` parts (taken as one array) sorted by value.

    Distinct values have one sorted order (by their first 16 bytes), so it depends on the set of
    rows only, never on their order or on how they are split into parts. Sorting by the first
    ``uint64`` is exact unless two rows share it (~n^2/2^65): only then is the second one read,
    and equal rows raise :class:`DuplicateValues` (side 0): equal ids blind to equal points.
    Peak: ~17 bytes per row besides the parts (a key, the order, flags of one slice).
    """
    head = _word(parts, 0)
    order = np.argsort(head)
    if _any_equal_neighbours(head, order):
        order, eq = _sorted(head, _word(parts, 1))
        if eq.any():
            raise DuplicateValues(0)
    return order


class DuplicateValues(Exception):
    """Internal: a set given to :func:`match` holds one value twice; ``side`` is 0 (a) or 1 (b)."""

    def __init__(self, side: int) -> None:
        super().__init__(side)
        self.side = side


def take_halves(parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The first and second ``uint64`` of every row of ``(n, 2) uint64`` parts, concatenated.

    Empties ``parts`` as it copies, so each part is freed once copied (when nothing else holds
    it): the peak is the result plus one part, not twice the result.
    """
    n = sum(len(p) for p in parts)
    hi, lo = np.empty(n, np.uint64), np.empty(n, np.uint64)
    at = 0
    parts.reverse()
    while parts:
        part = parts.pop()
        hi[at : at + len(part)], lo[at : at + len(part)] = part[:, 0], part[:, 1]
        at += len(part)
    return hi, lo


def match(parts: list[np.ndarray], n_a: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``(ia, ib)`` with ``a[ia] == b[ib]``, ordered by ``ia``, where ``parts`` are the
    ``(n, 2) uint64`` parts of the set ``a`` (``n_a`` rows in all) and then of the set ``b``.

    One sort of both sets finds the matches and any duplicate within a set, which raises
    :class:`DuplicateValues` naming the side (``a`` is checked first). Consumes ``parts`` (see
    :func:`take_halves`) and frees each array once it is used: the peak is about 33 bytes per row
    of both sets (16 for the values, 8 for the order, 1 for flags, up to 8 for matched pairs).
    """
    hi, lo = take_halves(parts)
    order, eq = _sorted(hi, lo)
    triple = bool((eq[1:] & eq[:-1]).any())  # three equal rows in a row: a duplicate somewhere
    left, right = order[:-1][eq], order[1:][eq]
    del order, eq
    left_a, right_a = left < n_a, right < n_a
    if triple or (left_a == right_a).any():  # a valid pair is one row of each set
        raise DuplicateValues(0 if has_duplicates(hi[:n_a], lo[:n_a]) else 1)
    del hi, lo
    ia = np.where(left_a, left, right)
    ib = np.where(left_a, right, left) - n_a
    del left, right
    keep = np.argsort(ia, kind="stable")
    return ia[keep], ib[keep]


def seeded_permutation(n: int, seed: bytes) -> np.ndarray:
    """A permutation of ``range(n)`` that every holder of the 32-byte ``seed`` derives alike.

    Keys come from libsodium's ChaCha20-based ``randombytes_buf_deterministic``, so the order is
    unpredictable to anyone without the seed (numpy's generators are not built for that).
    """
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    keys = np.frombuffer(randombytes_buf_deterministic(8 * n, seed), dtype="<u8")
    return np.argsort(keys, kind="stable").astype(np.int64)
