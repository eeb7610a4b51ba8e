"""The ``fairness`` step's keys: see :mod:`fedsilo.jobschema`."""

from __future__ import annotations

from dataclasses import replace

from fedsilo.jobschema import (
    ALIGNMENT,
    INSECURE_MIN_KEY_BITS,
    KEY_BITS,
    MODEL,
    Param,
    Rule,
    StepSchema,
)

__all__ = ["SCHEMA"]

SCHEMA = StepSchema(
    "fairness",
    "fairness audit: group metrics of scores at the label holder for protected attributes "
    "another silo holds, under Paillier",
    (
        replace(
            ALIGNMENT,
            help="rows to audit; default: the psi step's (the evaluated test rows when the "
            "scores are an evaluate step's)",
        ),
        replace(
            MODEL,
            help="model version of the scores in the score table (a registry id); default: "
            "the model the job's score step scored with, or (an evaluate step last, no "
            "'table') the test scores that evaluate step kept at the label holder",
        ),
        Param(
            "table",
            "str",
            None,
            "score table at the label holder; default: the job's score step's, else 'scores'",
        ),
        Param(
            "attribute_party",
            "str",
            None,
            "silo holding the protected attributes (the label holder itself: a local audit); "
            "default: the job's only passive party",
        ),
        Param(
            "attributes",
            "strings",
            None,
            "protected attribute columns at the attribute holder, each audited alone",
        ),
        Param(
            "intersections",
            "string_lists",
            None,
            'intersections audited as groupings of their own, e.g. [["SEX", "AGE"]]',
        ),
        Param(
            "bands",
            "bands",
            None,
            "band edges of numeric attributes, e.g. { AGE = [25, 35, 45, 55] }; "
            "other columns group by value",
        ),
        Param(
            "thresholds",
            "numbers",
            [0.5],
            "score thresholds: a row is selected (flagged) when its score is at least one",
        ),
        Param(
            "approval_rates",
            "numbers",
            None,
            "pooled approval rates, each turned into the threshold that approves that share "
            "of rows (score below it)",
        ),
        Param(
            "calibration_bands",
            "int",
            10,
            "score bands (pooled quantiles) of the calibration table",
            "bands",
            low=1,
            high=50,
        ),
        Param(
            "bins",
            "int",
            128,
            "score bins behind each group's AUC (pooled quantiles; every distinct score when "
            "there are at most this many, which makes it exact)",
            "bins",
            low=2,
            high=4096,
        ),
        KEY_BITS,
        INSECURE_MIN_KEY_BITS,
    ),
    (
        Rule("attributes", lambda v: bool(v["attributes"]), "must list at least one column"),
        Rule(
            "approval_rates",
            lambda v: all(0 < a < 1 for a in v["approval_rates"] or []),
            "must lie strictly between 0 and 1",
        ),
        Rule(
            "intersections",
            lambda v: all(len(set(i)) == len(i) >= 2 for i in v["intersections"] or []),
            "must each name two or more different columns",
        ),
    ),
)
