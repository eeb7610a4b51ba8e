"""The ``score`` step's keys: see :mod:`fedsilo.jobschema`."""

from __future__ import annotations

from dataclasses import replace

from fedsilo.jobschema import ALIGNMENT, CHUNK_ROWS, MODEL, Param, StepSchema

__all__ = ["SCHEMA"]

SCHEMA = StepSchema(
    "score",
    "federated batch scoring into a table at the label holder",
    (
        MODEL,
        replace(
            ALIGNMENT,
            help="rows to score; default: the psi step's, or (a whole model "
            "at one member) the member's own dataset",
        ),
        Param("table", "str", "scores", "table the scores are written to"),
        CHUNK_ROWS,
    ),
)
