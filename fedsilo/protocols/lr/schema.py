"""The ``lr`` step's keys: see :mod:`fedsilo.jobschema` (``LR_PARAMS``, shared with ``hlr``)."""

from __future__ import annotations

from dataclasses import replace

from fedsilo.jobschema import ALIGNMENT, KEY_BITS, LR_PARAMS, NAME, StepSchema

__all__ = ["SCHEMA"]

SCHEMA = StepSchema(
    "lr",
    "vertical logistic regression (Paillier) between label holder and passives",
    (
        replace(ALIGNMENT, help="training rows; default: the split's train part, else psi's"),
        KEY_BITS,
        NAME,
        *LR_PARAMS,
    ),
)
