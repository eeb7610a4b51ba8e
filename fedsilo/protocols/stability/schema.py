"""The ``stability`` step's keys: see :mod:`fedsilo.jobschema`."""

from __future__ import annotations

from dataclasses import replace

from fedsilo.jobschema import ALIGNMENT, Param, Rule, StepSchema

__all__ = ["SCHEMA"]

SCHEMA = StepSchema(
    "stability",
    "population stability index between a training population and a scoring batch, per "
    "characteristic at its owner and for the score at the label holder",
    (
        Param(
            "train_alignment",
            "str",
            None,
            "the training population: a stored alignment (what the model trained on)",
        ),
        replace(
            ALIGNMENT,
            help="the scoring batch (batch = alignment): a stored alignment; default: the psi "
            "step's",
        ),
        Param(
            "batch",
            "str",
            "alignment",
            "alignment: the batch is an alignment of the job's datasets; dataset: each silo's "
            "whole dataset the job names (a new table), against the training alignment's rows",
            choices=("alignment", "dataset"),
        ),
        Param(
            "bins",
            "int",
            10,
            "bins per characteristic (training quantiles)",
            "bins",
            low=2,
            high=100,
        ),
        Param(
            "score_table",
            "str",
            None,
            "the label holder's score table; with it, the index of the score too",
        ),
        Param(
            "score_version",
            "str",
            None,
            "model version of the scores in score_table (the score step's model id)",
        ),
    ),
    (
        Rule("train_alignment", lambda v: bool(v.get("train_alignment")), "is required"),
        Rule(
            "score_version",
            lambda v: not v.get("score_table") or bool(v.get("score_version")),
            "is required with score_table",
        ),
    ),
)
