"""The ``score`` step's keys: see :mod:`fedsilo.jobschema`."""

from __future__ import annotations

from dataclasses import replace

from fedsilo.jobschema import ALIGNMENT, CHUNK_ROWS, MODEL, Param, Rule, StepSchema

__all__ = ["MAX_REASONS", "SCHEMA"]

#: most reason columns a score table may carry
MAX_REASONS = 10

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
        Param(
            "reasons",
            "int",
            0,
            "top adverse reasons written per row (columns reason_1..reason_k); 0: none",
            "reasons",
            low=0,
            high=MAX_REASONS,
        ),
        Param(
            "reason_codes",
            "code_table",
            None,
            'consortium reason-code table: feature label (or party, or "*") = code',
        ),
        Param(
            "adverse",
            "str",
            "high",
            "which way of the score is adverse: a high score (default, fraud) or a low one",
            choices=("high", "low"),
        ),
        Param(
            "explain",
            "str",
            "none",
            "what passive silos of a vertical LR model release per row for explanations "
            "(each only if its policy allows it)",
            choices=("none", "party", "feature"),
        ),
    ),
    (
        Rule(
            "explain",
            lambda v: v.get("explain", "none") == "none" or bool(v.get("reasons")),
            "asks passive silos to release per-row values: it needs reasons > 0",
        ),
    ),
)
