"""The ``psi`` step's keys: see :mod:`fedsilo.jobschema`."""

from __future__ import annotations

from dataclasses import replace

from fedsilo.jobschema import ALIGNMENT, Param, StepSchema

__all__ = ["SCHEMA"]

SCHEMA = StepSchema(
    "psi",
    "ECDH private set intersection between the label holder and passives",
    (
        replace(
            ALIGNMENT,
            help="name each silo stores its aligned rows under; default: the job name",
        ),
        Param(
            "mode",
            "str",
            "alignment",
            "alignment: store the aligned rows; cardinality: every party learns only the count",
            choices=("alignment", "cardinality"),
        ),
        Param(
            "reveal",
            "reveal",
            "all",
            "who besides the label holder learns and stores the "
            'alignment: "all" passives, "leader" (nobody else) or a list of passives',
        ),
        Param("replace", "bool", False, "replace an existing alignment of the same name"),
    ),
)
