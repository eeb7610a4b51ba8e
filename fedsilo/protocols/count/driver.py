"""Driver of the ``count`` step: every party releases its alignment's row count; they must agree.

::

    [[steps]]
    kind = "count"
    alignment = "default-risk"   # default: the psi step's alignment
"""

from __future__ import annotations

from typing import Any

from fedsilo.coordinator.drivers import driver
from fedsilo.coordinator.jobrun import JobRun
from fedsilo.errors import JobError
from fedsilo.jobspec import input_alignment


@driver("count")
def run_count(run: JobRun, step: dict[str, Any]) -> dict[str, Any]:
    alignment = input_alignment(run.wire_spec, run.step_index)
    replies = run.call_many({p: ("count.release", {}, []) for p in run.parties})
    counts = {p: int(r.meta["rows"]) for p, r in replies.items()}
    if len(set(counts.values())) != 1:
        raise JobError(f"silos hold alignment '{alignment}' with different sizes: {counts}")
    rows = next(iter(counts.values()))
    run.log(f"count: alignment {alignment} has {rows} rows at {', '.join(sorted(counts))}")
    return {"alignment": alignment, "rows": rows}
