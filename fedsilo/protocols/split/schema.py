"""The ``split`` step's keys: see :mod:`fedsilo.jobschema`."""

from __future__ import annotations

from dataclasses import replace

from fedsilo.jobschema import ALIGNMENT, Param, Rule, StepSchema, fraction

__all__ = ["SCHEMA"]

_SPLIT_RULE = Rule(
    "valid_fraction",
    lambda v: v["test_fraction"] + v["valid_fraction"] < 1,
    "plus 'test_fraction' must be below 1",
)

SCHEMA = StepSchema(
    "split",
    "stratified train / validation / test split of an alignment",
    (
        replace(ALIGNMENT, help="alignment to split; default: the psi step's"),
        fraction("test_fraction", 0.2, "share of rows in the test part"),
        fraction("valid_fraction", 0.0, "share of rows in the validation part"),
        Param("seed", "int", 42, "seed of the draw"),
    ),
    (_SPLIT_RULE,),
)
