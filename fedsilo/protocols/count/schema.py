"""The ``count`` step's keys: see :mod:`fedsilo.jobschema`."""

from __future__ import annotations

from dataclasses import replace

from fedsilo.jobschema import ALIGNMENT, StepSchema

__all__ = ["SCHEMA"]

SCHEMA = StepSchema(
    "count",
    "every silo releases the row count of an alignment it stores, if at least its minimum",
    (replace(ALIGNMENT, help="alignment to count; default: the psi step's"),),
)
