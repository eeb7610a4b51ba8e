"""Driver of the ``serve`` step: prepare a registered vertical model for online scoring.

::

    [[steps]]
    kind = "serve"
    model = "fraud-secureboost-v1"
    on_party_down = "degrade"     # or "fail" (the default)

The job's parties are the model's; the label holder draws the pseudonym key and seals it to the
passive silos through this relay. The job's id is the serving id that ``fedsilo serve`` opens
streams for (docs/serving.md).
"""

from __future__ import annotations

from typing import Any

from fedsilo.coordinator.drivers import driver
from fedsilo.coordinator.jobrun import JobRun
from fedsilo.errors import ConfigError
from fedsilo.protocols.score.driver import resolve_model

__all__ = ["run_serve"]


@driver("serve")
def run_serve(run: JobRun, step: dict[str, Any]) -> dict[str, Any]:
    model_id, kind, record = resolve_model(run, step)
    if kind not in ("secureboost", "lr"):
        raise ConfigError(f"model '{model_id}' is {kind}: only vertical models are served online")
    parts = record.get("parts", {})
    if sorted(parts) != run.parties:
        raise ConfigError(
            f"serving '{model_id}' needs exactly its parties {sorted(parts)} in the job"
        )
    active = run.active()
    passives = [p for p in run.parties if p != active]
    prepared = run.call(active, "serve.prepare", {"part": parts[active]})
    run.call_many(
        {p: ("serve.accept", {"part": parts[p]}, prepared.outbox_for(p)) for p in passives}
    )
    run.log(f"prepared online scoring of {model_id} (serving id {run.job_id})")
    return {"model": model_id, "serving_id": run.job_id, "kind": kind, "parties": run.parties}
