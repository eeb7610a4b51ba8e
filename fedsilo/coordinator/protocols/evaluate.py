"""Driver of the `evaluate` step: federated prediction on the test rows, report at the label holder.

::

    [[steps]]
    kind = "evaluate"          # after a split and a training step
    model = "..."              # optional: defaults to the model this job trained
    alignment = "x-test"       # optional: defaults to the split's test alignment
"""

from __future__ import annotations

from typing import Any

from fedsilo import settings
from fedsilo.coordinator.jobrun import JobRun
from fedsilo.coordinator.protocols import driver
from fedsilo.coordinator.protocols.score import predict_range, resolve_model
from fedsilo.errors import ConfigError
from fedsilo.jobspec import split_parts, test_alignment


def _alignments(run: JobRun, step: dict[str, Any], record: dict[str, Any]) -> tuple[str, str]:
    """(test, train) alignments, derived from the spec as the silos derive them."""
    test = test_alignment(run.wire_spec, run.step_index)
    parts = split_parts(run.wire_spec, run.step_index) or {}
    train = step.get("train_alignment") or parts.get("train") or record["trained_on"]["alignment"]
    if not test or not train:
        raise ConfigError("step 'evaluate' needs 'alignment' (or a split step before it)")
    return str(test), str(train)


def _fmt(value: object) -> str:
    """A released metric for the job log: 4 decimals, or 'withheld' when policy withheld it."""
    return f"{value:.4f}" if isinstance(value, float) else "withheld"


@driver("evaluate")
def run_evaluate(run: JobRun, step: dict[str, Any]) -> dict[str, Any]:
    model_id, kind, record = resolve_model(run, step)
    record = {**record, "kind": kind}
    test, train = _alignments(run, step, record)
    active = run.active()
    part = record["parts"][active]
    rows = int(run.results.get("split", {}).get("sizes", {}).get("test", 0)) or None
    if rows is None:
        raise ConfigError("step 'evaluate' needs a split step before it in the same job")
    chunk = int(step.get("chunk_rows", settings.WRITE_CHUNK_ROWS))
    for start in range(0, rows, chunk):
        meta = {
            "model_id": part,
            "alignment": test,
            "start": start,
            "stop": min(rows, start + chunk),
        }
        predict_range(run, record, "evaluate.chunk", meta)
    out = run.call(
        active,
        "evaluate.finish",
        {
            "model_id": part,
            "model": model_id,
            "alignment": test,
            "train_alignment": train,
            "params": record.get("params", {}),
        },
    ).meta
    run.store.update_model(
        model_id, {**{k: v for k, v in record.items() if k != "kind"}, "metrics": out["metrics"]}
    )
    metrics = out["metrics"]
    run.log(
        f"evaluated {model_id}: AUC {_fmt(metrics.get('auc'))} (label holder alone: "
        f"{_fmt(metrics.get('label_holder_only_auc'))}); report at {active}: {out['report']}"
    )
    return {"model": model_id, "metrics": out["metrics"], "report": out["report"]}
