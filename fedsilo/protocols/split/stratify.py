"""Stratified train / validation / test split of aligned rows, as positions.

Pure: given the labels of an alignment (held by the label holder), returns sorted position
arrays. Same seed, same labels, same split, on any machine (numpy's PCG64).
"""

from __future__ import annotations

import numpy as np

__all__ = ["stratified_positions"]


def stratified_positions(
    labels: np.ndarray, *, test_fraction: float, valid_fraction: float, seed: int
) -> dict[str, np.ndarray]:
    """Positions of ``train``, ``valid`` (may be empty) and ``test``, stratified by label."""
    if (
        not 0 < test_fraction < 1
        or not 0 <= valid_fraction < 1
        or test_fraction + valid_fraction >= 1
    ):
        raise ValueError("test and validation fractions must be in (0, 1) and sum below 1")
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "valid": [], "test": []}
    for value in np.unique(labels):
        idx = np.flatnonzero(labels == value)
        rng.shuffle(idx)
        n_test = int(round(len(idx) * test_fraction))
        n_valid = int(round(len(idx) * valid_fraction))
        parts["test"].append(idx[:n_test])
        parts["valid"].append(idx[n_test : n_test + n_valid])
        parts["train"].append(idx[n_test + n_valid :])
    return {k: np.sort(np.concatenate(v)).astype(np.int64) for k, v in parts.items()}
