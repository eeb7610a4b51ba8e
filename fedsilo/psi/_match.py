"""Comparing doubly blinded values as fixed-width numbers, and shuffling without a Python loop.

A doubly blinded point is pseudo-random, so its first 16 bytes (a :data:`Fingerprint`, viewed as
two ``uint64``) identify it: two distinct ids collide with probability ~n·m/2^128. Matching sorts
the two arrays together once (``np.lexsort``) and pairs equal neighbours: O((n+m) log(n+m)), no
Python sets, 16 bytes per id plus an index.
"""

from __future__ import annotations

import numpy as np
from nacl.bindings import randombytes_buf_deterministic

from fedsilo.errors import ProtocolError

__all__ = ["FP_BYTES", "fingerprints", "has_duplicates", "match", "seeded_permutation"]

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


def _sorted_order(fp: np.ndarray) -> np.ndarray:
    return np.lexsort((fp[:, 1], fp[:, 0]))


def _equal_neighbours(fp: np.ndarray, order: np.ndarray) -> np.ndarray:
    s = fp[order]
    return (s[1:, 0] == s[:-1, 0]) & (s[1:, 1] == s[:-1, 1])


def has_duplicates(fp: np.ndarray) -> bool:
    """Whether two rows of ``(n, 2) uint64`` are equal (two equal ids give equal values)."""
    return bool(len(fp) > 1 and _equal_neighbours(fp, _sorted_order(fp)).any())


def match(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``(ia, ib)`` with ``a[ia] == b[ib]``, ordered by ``ia``; each side must be unique."""
    both = np.concatenate([a, b])
    order = _sorted_order(both)
    eq = _equal_neighbours(both, order)
    left, right = order[:-1][eq], order[1:][eq]
    ia = np.where(left < len(a), left, right)
    ib = np.where(left < len(a), right, left) - len(a)
    if (ia >= len(a)).any() or (ib < 0).any():
        raise ProtocolError("a PSI set holds the same blinded value twice")
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
