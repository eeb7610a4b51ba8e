"""The ``hxgb`` step's keys: see :mod:`fedsilo.jobschema` (``BOOST_PARAMS``, shared with
``secureboost``)."""

from __future__ import annotations

from fedsilo.jobschema import BOOST_PARAMS, EVALUATE_ON, NAME, Rule, StepSchema, fraction

__all__ = ["SCHEMA"]

_HXGB_RULE = Rule(
    "early_stopping_rounds",
    lambda v: not v["early_stopping_rounds"] or v["validation_fraction"] > 0,
    "needs 'validation_fraction' > 0",
)

SCHEMA = StepSchema(
    "hxgb",
    "horizontal XGBoost over CKKS secure sums, >= 3 members",
    (
        NAME,
        fraction(
            "validation_fraction",
            0.0,
            "share of its rows each member holds out for the pooled validation loss",
            0.5,
            open_high=False,
        ),
        EVALUATE_ON,
        *BOOST_PARAMS,
    ),
    (_HXGB_RULE,),
)
