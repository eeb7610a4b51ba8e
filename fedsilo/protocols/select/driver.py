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

from fedsilo.coordinator.drivers import driver
from fedsilo.coordinator.jobrun import JobRun

__all__ = ["run_select"]


@driver("select")
def run_select(run: JobRun, step: dict[str, Any]) -> dict[str, Any]:
    replies = run.call_many({p: ("select.apply", {}, []) for p in run.parties})
    kept = {p: {"kept": int(r.meta["kept"]), "of": int(r.meta["of"])} for p, r in replies.items()}
    run.log("select: " + ", ".join(f"{p} keeps {k['kept']} of {k['of']}" for p, k in kept.items()))
    return {"kept": kept}
