"""The no-op job: every silo answers with its role and dataset size. Proves the path works."""

from __future__ import annotations

from typing import Any

from fedsilo.coordinator.drivers import driver
from fedsilo.coordinator.jobrun import JobRun


@driver("noop")
def run_noop(run: JobRun, step: dict[str, Any]) -> dict[str, Any]:
    replies = run.call_many({p: ("job.echo", {}, []) for p in run.parties})
    return {"rows": {p: r.meta.get("rows") for p, r in replies.items()}}
