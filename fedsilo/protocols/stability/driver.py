"""Driver of the ``stability`` step: every silo computes the population stability index of its
own characteristics; the label holder also that of the score.

::

    [[steps]]
    kind = "stability"
    train_alignment = "train-2025"   # the training population
    alignment = "batch-2026-06"      # the scoring batch (default: the psi step's)
    # batch = "dataset"              # or: each silo's whole dataset the job names
    score_table = "scores"           # optional: the score's index at the label holder
    score_version = "credit-lr-1"

The step's result: ``batch`` (the alignment, or ``"dataset"``), ``characteristics`` by
``party.column`` (index, band, rows of each population, per-bin shares where released),
``score`` (the same, at the label holder) and ``warnings``: the labels whose band is ``watch``
(0.10–0.25) or ``shift`` (above 0.25).
"""

from __future__ import annotations

from typing import Any

from fedsilo.coordinator.drivers import driver
from fedsilo.coordinator.jobrun import JobRun
from fedsilo.errors import JobError
from fedsilo.jobschema import check_step
from fedsilo.jobspec import input_alignment


@driver("stability")
def run_stability(run: JobRun, step: dict[str, Any]) -> dict[str, Any]:
    values = check_step(step, run.step_index)
    by_dataset = values["batch"] == "dataset"
    batch = "dataset" if by_dataset else input_alignment(run.wire_spec, run.step_index)
    run.log(f"stability: training population {values['train_alignment']}, batch {batch}")
    replies = run.call_many({p: ("stability.index", {}, []) for p in run.parties})
    characteristics: dict[str, Any] = {}
    score: dict[str, Any] | None = None
    for party, reply in sorted(replies.items()):
        for label, released in reply.meta.get("characteristics", {}).items():
            characteristics[f"{party}.{label}"] = released
        if "score" in reply.meta:
            if score is not None:
                raise JobError("more than one silo released a score stability index")
            score = {"party": party, **reply.meta["score"]}
    found = {**characteristics, **({"score": score} if score else {})}
    warnings = {k: v["band"] for k, v in found.items() if v.get("band") in ("watch", "shift")}
    run.log(
        f"stability of {batch}: {len(characteristics)} characteristics"
        + (", score" if score else "")
        + (f"; shifted: {', '.join(sorted(warnings))}" if warnings else "; all stable")
    )
    return {
        "batch": batch,
        "train_alignment": values["train_alignment"],
        "characteristics": characteristics,
        "score": score,
        "warnings": warnings,
    }
