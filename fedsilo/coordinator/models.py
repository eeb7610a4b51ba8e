"""Recording trained models in the coordinator's registry, in one shape for every kind.

A record holds what the coordinator may know: the kind, the parties and the id of each one's
part, the training parameters, the job and alignment it was trained on, and the metrics the
label holder released. Never weights, thresholds or keys: those stay in the silos' databases.
"""

from __future__ import annotations

from typing import Any

from fedsilo import jobspec
from fedsilo.coordinator.jobrun import JobRun
from fedsilo.coordinator.store import ModelRecord
from fedsilo.protocols import MODEL_KINDS

__all__ = ["MODEL_KINDS", "part_id", "record_model"]


def part_id(run: JobRun, kind: str) -> str:
    """The id under which every silo stores its part of the model this job trains (the silos
    derive the same id themselves, :func:`fedsilo.jobspec.part_id`)."""
    return jobspec.part_id(run.job_id, kind)


def record_model(
    run: JobRun,
    *,
    kind: str,
    params: dict[str, Any],
    alignment: str | None,
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    name: str | None = None,
) -> ModelRecord:
    """Register the model this job trained; returns the registry record (id ``NAME-vN``)."""
    record = {
        "kind_name": MODEL_KINDS.get(kind, kind),
        "parties": {p: run.role(p) for p in run.parties},
        "parts": {p: part_id(run, kind) for p in run.parties},
        "params": params,
        "trained_on": {
            "job_id": run.job_id,
            "alignment": alignment,
            "datasets": {p: run.spec.parties[p]["dataset"] for p in run.parties},
        },
        "metrics": metrics or {},
        **(extra or {}),
    }
    model = run.store.register_model(
        name=name or f"{run.spec.name}-{kind}", kind=kind, job_id=run.job_id, record=record
    )
    run.log(f"registered model {model.model_id} ({MODEL_KINDS.get(kind, kind)})")
    return model
