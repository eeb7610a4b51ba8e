"""Driver of the ``select`` step: every silo keeps those of its own columns that pass.

::

    [[steps]]
    kind = "select"
    min_iv = 0.02                 # from the last woe step (each silo: the IV it holds)
    importance = "secureboost"    # and/or: a model this job trained before
    min_importance = 0
    top_k = 5                     # per silo

The coordinator learns how many columns each silo kept; which, only the silo knows.
"""

from __future__ import annotations

from typing import Any

from fedsilo.coordinator.config import JobSpec
from fedsilo.coordinator.drivers import driver, index_of
from fedsilo.coordinator.jobrun import JobRun
from fedsilo.errors import ConfigError
from fedsilo.jobschema import check_step, step_label
from fedsilo.jobspec import previous_step

__all__ = ["check", "run_select"]


def check(spec: JobSpec, step: dict[str, Any]) -> None:
    """Each criterion's input must come from an earlier step of the job."""
    index = index_of(spec, step)
    values = check_step(step, index)
    wire = {"steps": spec.steps}
    needs = {"min_iv": "woe", "importance": values["importance"]}
    for key, kind in needs.items():
        if values[key] is not None and previous_step(wire, index, str(kind)) is None:
            raise ConfigError(
                f"{step_label(index, 'select')}: '{key}' needs a {kind} step before it in the job"
            )


@driver("select", check=check)
def run_select(run: JobRun, step: dict[str, Any]) -> dict[str, Any]:
    replies = run.call_many({p: ("select.apply", {}, []) for p in run.parties})
    kept = {p: {"kept": int(r.meta["kept"]), "of": int(r.meta["of"])} for p, r in replies.items()}
    run.log("select: " + ", ".join(f"{p} keeps {k['kept']} of {k['of']}" for p, k in kept.items()))
    return {"kept": kept}
