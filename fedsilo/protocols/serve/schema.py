"""The ``serve`` step's keys: see :mod:`fedsilo.jobschema`."""

from __future__ import annotations

from dataclasses import replace

from fedsilo.jobschema import MODEL, Param, StepSchema

__all__ = ["SCHEMA"]

SCHEMA = StepSchema(
    "serve",
    "prepare online scoring of a vertical model: its silos agree a pseudonym key and "
    "serving keys the coordinator never sees (docs/serving.md)",
    (
        replace(MODEL, help="registry id of the SecureBoost or vertical LR model to serve"),
        Param(
            "on_party_down",
            "str",
            "fail",
            "the model's serving policy when a passive silo is down or too slow: fail the "
            "request, or score it with that silo's features missing (the response says so)",
            choices=("fail", "degrade"),
        ),
    ),
)
