"""The ``stats`` step's keys: see :mod:`fedsilo.jobschema`."""

from __future__ import annotations

from dataclasses import replace

from fedsilo.jobschema import ALIGNMENT, KEY_BITS, Param, StepSchema

__all__ = ["DEFAULT_QUANTILES", "SCHEMA"]

#: quantiles profiled when a step names none
DEFAULT_QUANTILES = [0.05, 0.25, 0.5, 0.75, 0.95]

SCHEMA = StepSchema(
    "stats",
    "per-column statistics at every silo and the cross-silo correlation matrix (Paillier) with "
    "variance inflation factors, each released under the owner's policy",
    (
        replace(ALIGNMENT, help="aligned population; default: the psi step's"),
        Param(
            "population",
            "str",
            "alignment",
            "alignment: the aligned rows; dataset: each silo's own whole dataset "
            "(no cross-silo correlation: its rows are not aligned)",
            choices=("alignment", "dataset"),
        ),
        Param("quantiles", "fractions", DEFAULT_QUANTILES, "quantiles profiled per column"),
        Param(
            "correlation",
            "bool",
            True,
            "compute the correlation matrix (within and across silos) and the VIFs",
        ),
        replace(KEY_BITS, help="each encrypting silo's Paillier key for the cross-silo products"),
    ),
)
