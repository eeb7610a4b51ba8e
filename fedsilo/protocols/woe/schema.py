"""The ``woe`` step's keys: see :mod:`fedsilo.jobschema`."""

from __future__ import annotations

from dataclasses import replace

from fedsilo.jobschema import ALIGNMENT, KEY_BITS, Param, StepSchema

__all__ = ["SCHEMA"]

SCHEMA = StepSchema(
    "woe",
    "WOE / IV binning of every silo's characteristics (passives' over encrypted labels)",
    (
        replace(ALIGNMENT, help="rows to bin; default: the split's train part, else psi's"),
        KEY_BITS,
        Param(
            "max_bins",
            "int",
            10,
            "quantile bins per numeric characteristic before small bins are merged",
            "bins",
            low=2,
            high=64,
        ),
        Param(
            "monotonic",
            "bool",
            False,
            "merge adjacent numeric bins until the event rate is monotonic",
        ),
        Param("categorical", "columns", [], "columns binned by value (each silo: its own)"),
        Param(
            "smoothing",
            "float",
            0.5,
            "added to both counts of a bin with no event or no non-event",
            low=0,
            high=1,
            open_low=True,
        ),
    ),
)
