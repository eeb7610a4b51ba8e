"""The ``select`` step's keys: see :mod:`fedsilo.jobschema`."""

from __future__ import annotations

from fedsilo.jobschema import Param, Rule, StepSchema

__all__ = ["SCHEMA"]

SCHEMA = StepSchema(
    "select",
    "each silo keeps those of its own columns that pass every criterion given",
    (
        Param(
            "min_iv",
            "float",
            None,
            "keep a column whose IV (last woe step) is at least this",
            low=0,
        ),
        Param(
            "importance",
            "str",
            None,
            "model of this job whose importance ranks columns (each silo: its own part)",
            choices=("lr", "secureboost"),
        ),
        Param(
            "min_importance",
            "float",
            0.0,
            "keep a column whose importance is above this (lr: |standardised coefficient|, "
            "secureboost: splits)",
            low=0,
        ),
        Param("top_k", "int", None, "then keep at most this many columns per silo", low=1),
        Param(
            "keep_at_least",
            "int",
            1,
            "a silo keeps its best columns up to this many even when fewer pass",
            low=1,
        ),
    ),
    (
        Rule(
            "min_iv",
            lambda v: v["min_iv"] is not None or v["importance"] is not None,
            "or 'importance' must be given (select by what?)",
        ),
    ),
)
