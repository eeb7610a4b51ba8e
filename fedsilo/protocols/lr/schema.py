"""The ``lr`` step's keys: see :mod:`fedsilo.jobschema` (``LR_PARAMS``, shared with ``hlr``)."""

from __future__ import annotations

from dataclasses import replace

from fedsilo.jobschema import ALIGNMENT, KEY_BITS, LR_PARAMS, NAME, Param, StepSchema

__all__ = ["SCHEMA"]

#: the scorecard: WOE-transformed characteristics, coefficients scaled to points
SCORECARD_PARAMS: tuple[Param, ...] = (
    Param(
        "transform",
        "str",
        "none",
        "woe: each silo trains on its own columns' WOE from the last woe step (a scorecard)",
        choices=("none", "woe"),
    ),
    Param("base_score", "float", 600.0, "scorecard points at odds base_odds", "points"),
    Param(
        "base_odds",
        "float",
        50.0,
        "non-event : event odds that score base_score",
        low=0,
        open_low=True,
    ),
    Param("pdo", "float", 20.0, "points to double the odds", "points", low=0, open_low=True),
)

SCHEMA = StepSchema(
    "lr",
    "vertical logistic regression (Paillier) between label holder and passives",
    (
        replace(ALIGNMENT, help="training rows; default: the split's train part, else psi's"),
        KEY_BITS,
        NAME,
        *LR_PARAMS,
        *SCORECARD_PARAMS,
    ),
)
