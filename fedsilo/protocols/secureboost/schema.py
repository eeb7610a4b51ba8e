"""The ``secureboost`` step's keys: see :mod:`fedsilo.jobschema`."""

from __future__ import annotations

from dataclasses import replace

from fedsilo import settings
from fedsilo.jobschema import (
    ALIGNMENT,
    BOOST_PARAMS,
    INSECURE_MIN_KEY_BITS,
    KEY_BITS,
    NAME,
    Param,
    StepSchema,
)

__all__ = ["SCHEMA", "SECUREBOOST_PARAMS"]

#: SecureBoost: XGBoost's parameters plus the Paillier ones
SECUREBOOST_PARAMS: tuple[Param, ...] = (
    *BOOST_PARAMS,
    KEY_BITS,
    INSECURE_MIN_KEY_BITS,
    Param(
        "precision_bits",
        "int",
        settings.SECUREBOOST_PRECISION_BITS,
        "fixed-point bits of encrypted gradients",
        "bits",
        low=8,
        high=40,
    ),
    Param(
        "binning",
        "str",
        "xgboost",
        "how features are cut into bins",
        choices=("xgboost", "quantile"),
    ),
)

SCHEMA = StepSchema(
    "secureboost",
    "vertical XGBoost (Paillier) between label holder and passives",
    (
        replace(ALIGNMENT, help="training rows; default: the split's train part, else psi's"),
        Param(
            "valid_alignment",
            "str",
            None,
            "validation rows; default: the split's validation part when it has rows",
        ),
        NAME,
        *SECUREBOOST_PARAMS,
    ),
)
