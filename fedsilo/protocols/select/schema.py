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
        Param(
            "max_vif",
            "float",
            None,
            "drop, one at a time, the column with the largest variance inflation factor above "
            "this, recomputed from the last stats step's correlation matrix after each drop "
            "(the coordinator decides; each silo learns which of its own columns went)",
            low=1,
        ),
        Param(
            "max_correlation",
            "float",
            None,
            "of each pair of columns whose |Pearson| in the last stats step's matrix is above "
            "this, drop the later one in matrix order (decided before max_vif)",
            low=0,
            high=1,
            open_low=True,
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
            lambda v: any(
                v[k] is not None for k in ("min_iv", "importance", "max_vif", "max_correlation")
            ),
            "or 'importance', 'max_vif' or 'max_correlation' must be given (select by what?)",
        ),
    ),
)
