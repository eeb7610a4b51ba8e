"""Driver of the `evaluate` step: federated prediction on the test rows, report at the label holder.

::

    [[steps]]
    kind = "evaluate"          # after a split and a training step
    model = "..."              # optional: defaults to the model this job trained
    alignment = "x-test"       # optional: defaults to the split's test alignment

Its inputs may come from earlier jobs: a registered ``model`` and a stored test ``alignment``
need no split or training step in the same job. The label holder tells how many rows the
alignment the accepted step names holds (``evaluate.plan``), the coordinator then asks for
predictions over that alignment in chunks (``chunk_rows``).
"""

from __future__ import annotations

from typing import Any

from fedsilo.coordinator.config import JobSpec
from fedsilo.coordinator.drivers import driver, index_of
from fedsilo.coordinator.jobrun import JobRun
from fedsilo.errors import ConfigError
from fedsilo.jobschema import step_label
from fedsilo.jobspec import chunk_rows, split_parts, test_alignment
from fedsilo.protocols.score.driver import predict_range, resolve_model


def _alignments(run: JobRun, step: dict[str, Any], record: dict[str, Any]) -> tuple[str, str]:
    """(test, train) alignments, derived from the spec as the silos derive them."""
    test = test_alignment(run.wire_spec, run.step_index)
    parts = split_parts(run.wire_spec, run.step_index) or {}
    train = step.get("train_alignment") or parts.get("train") or record["trained_on"]["alignment"]
    if not test or not train:
        raise ConfigError(
            f"{step_label(run.step_index, 'evaluate')}: needs 'alignment' (or a "
            "split step before it)"
        )
    return str(test), str(train)


def _fmt(value: object) -> str:
    """A released metric for the job log: 4 decimals, or 'withheld' when policy withheld it."""
    return f"{value:.4f}" if isinstance(value, float) else "withheld"


def check(spec: JobSpec, step: dict[str, Any]) -> None:
    """The test rows must be named by the spec: the step's ``alignment`` (a stored alignment,
    perhaps of an earlier job) or the test part of a split before it."""
    index = index_of(spec, step)
    if not test_alignment(spec.to_wire(""), index):
        raise ConfigError(
            f"{step_label(index, 'evaluate')}: needs 'alignment' (a stored test "
            "alignment) or a split step before it"
        )


@driver("evaluate", check=check)
def run_evaluate(run: JobRun, step: dict[str, Any]) -> dict[str, Any]:
    model_id, kind, record = resolve_model(run, step)
    record = {**record, "kind": kind}
    test, train = _alignments(run, step, record)
    active = run.active()
    part = record["parts"][active]
    rows = int(run.call(active, "evaluate.plan").meta["rows"])  # of `test`, as the silo reads it
    chunk = chunk_rows(run.wire_spec, run.step_index)
    task = run.progress.task(f"evaluate: rows predicted with {model_id}", total=rows)
    for start in range(0, rows, chunk):
        meta = {
            "model_id": part,
            "alignment": test,
            "start": start,
            "stop": min(rows, start + chunk),
        }
        predict_range(run, record, "evaluate.chunk", meta)
        task.advance(meta["stop"] - start)
    task.finish()
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
