"""The ``hlr`` step's keys: see :mod:`fedsilo.jobschema` (``HLR_PARAMS``: LR's with other
defaults, shared with the LR configuration both forms use)."""

from __future__ import annotations

from fedsilo.jobschema import EVALUATE_ON, HLR_PARAMS, NAME, StepSchema

__all__ = ["SCHEMA"]

SCHEMA = StepSchema(
    "hlr",
    "horizontal logistic regression over CKKS secure sums, >= 3 members",
    (
        NAME,
        EVALUATE_ON,
        *HLR_PARAMS,
    ),
)
