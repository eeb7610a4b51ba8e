"""Numeric functions several protocols share (LR and tree boosting alike), with one definition.

``1 / (1 + exp(-z))`` overflows ``exp`` for ``z`` below about -709 and warns; scipy's ``expit``
is exact in both tails and never warns, so every protocol's probabilities come from here.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.special import expit

__all__ = ["sigmoid"]

FloatArray = npt.NDArray[np.float64]


def sigmoid(z: npt.ArrayLike) -> FloatArray:
    """Logistic function ``1 / (1 + exp(-z))``, stable for any finite ``z``."""
    return np.asarray(expit(np.asarray(z, dtype=np.float64)), dtype=np.float64)
