"""The ``evaluate`` step's keys: see :mod:`fedsilo.jobschema`."""

from __future__ import annotations

from dataclasses import replace

from fedsilo.jobschema import ALIGNMENT, CHUNK_ROWS, MODEL, Param, StepSchema

__all__ = ["SCHEMA"]

SCHEMA = StepSchema(
    "evaluate",
    "federated prediction on test rows; metrics and report at the label holder",
    (
        MODEL,
        replace(
            ALIGNMENT,
            help="test rows; default: the split's test part (a stored "
            "alignment of an earlier job needs no split in this job)",
        ),
        Param(
            "train_alignment",
            "str",
            None,
            "rows of the label-holder-only baseline; "
            "default: the split's train part, else what the model trained on",
        ),
        CHUNK_ROWS,
    ),
)
