"""Driver of the `score` step: federated batch scoring into the label holder's database.

::

    [[steps]]
    kind = "score"
    model = "default-risk-secureboost-v1"   # a registry id, or a kind trained earlier in the job
    alignment = "to-score"                 # or the alignment the job's psi step made
    table = "risk_scores"
    chunk_rows = 10000

A whole model (``hxgb``, ``hlr``: every member holds all of it) scores at one member alone: the
job has a single party, role ``member``, and no PSI. Without ``alignment`` that member first
stores its own dataset's ids as the alignment ``<job id>-local`` (``score.local_alignment``);
the chunked, resumable plan / chunk path is then the same as for vertical models, without
``predict.part`` calls to anyone.
"""

from __future__ import annotations

from typing import Any

from fedsilo.coordinator.drivers import driver
from fedsilo.coordinator.jobrun import JobRun
from fedsilo.errors import ConfigError, FedsiloError, JobError
from fedsilo.jobspec import score_alignment, score_table
from fedsilo.protocols import WHOLE_KINDS
from fedsilo.protocols.split.driver import alignment_of

__all__ = ["WHOLE_KINDS", "predict_range", "resolve_model", "scorer"]


def resolve_model(run: JobRun, step: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """``(registry id, kind, record)`` of the model a step names or the job just trained."""
    model_id = step.get("model")
    earlier = run.results.get(str(model_id)) if model_id else None
    if isinstance(earlier, dict) and "model" in earlier:
        model_id = earlier["model"]  # `model = "secureboost"`: the one this job trained
    if not model_id:
        trained = [v for v in run.results.values() if isinstance(v, dict) and "model" in v]
        if not trained:
            raise ConfigError(f"step '{step['kind']}' needs 'model' (or a training step before it)")
        model_id = trained[-1]["model"]
    model = run.store.get_model(str(model_id))
    return model.model_id, model.kind, model.record


def scorer(run: JobRun, record: dict[str, Any]) -> str:
    """The party that finishes predictions and holds the scores: the label holder, or for a
    whole model the job's single member (which must hold a part of the model)."""
    if record.get("kind") not in WHOLE_KINDS:
        return run.active()
    if len(run.parties) != 1 or run.with_role("member") != run.parties:
        raise ConfigError(
            f"scoring with a whole ({record.get('kind')}) model runs at one member "
            "alone: the job needs exactly one party, in role 'member'"
        )
    party = run.parties[0]
    if party not in record.get("parts", {}):
        raise JobError(f"model has no part at '{party}' (it was not a member of its training)")
    return party


def predict_range(
    run: JobRun, record: dict[str, Any], method: str, meta: dict[str, Any]
) -> dict[str, Any]:
    """One federated prediction over ``meta``'s range, finished by ``method`` at the label
    holder (a whole model: at its single member, with no other silo involved)."""
    if record.get("kind") in WHOLE_KINDS:
        return run.call(scorer(run, record), method, meta).meta
    active = run.active()
    holders = [p for p, part in record["parts"].items() if p != active and p in run.parties]
    missing = sorted(set(record["parts"]) - set(run.parties))
    if missing and record.get("kind") in ("secureboost", "lr"):
        raise JobError(f"model needs party '{missing[0]}', which is not in this job")
    inbox = []
    if holders and record.get("federated_prediction", True):
        parts = run.call_many({p: ("predict.part", meta, []) for p in holders})
        inbox = [env for reply in parts.values() for env in reply.outbox_for(active)]
    return run.call(active, method, meta, inbox).meta


def _alignment(run: JobRun, step: dict[str, Any], kind: str, at: str) -> str:
    """The alignment to score: the step's or PSI's; for a whole model without one, the member's
    own dataset stored as ``<job id>-local`` (kept by a resumed job, so it scores the same
    chunks). Derived from the spec as the silos derive it."""
    if kind not in WHOLE_KINDS:
        return alignment_of(run, step)
    name = score_alignment(run.wire_spec, run.step_index, run.job_id)
    if name != f"{run.job_id}-local":
        return name
    rows = run.call(at, "score.local_alignment").meta["rows"]
    run.log(f"{at} scores its own dataset alone: {rows} ids in alignment {name}")
    return name


@driver("score")
def run_score(run: JobRun, step: dict[str, Any]) -> dict[str, Any]:
    model_id, kind, record = resolve_model(run, step)
    record = {**record, "kind": kind}
    at = scorer(run, record)
    alignment = _alignment(run, step, kind, at)
    table = score_table(run.wire_spec, run.step_index)
    base = {
        "model_id": record["parts"][at],
        "alignment": alignment,
        "table": table,
        "version": model_id,
    }
    plan = run.call(at, "score.plan", base).meta
    pending = plan["pending"]
    task = run.progress.task(f"scoring {plan['rows']} rows with {model_id}", total=len(pending))
    written = 0
    try:
        for start, stop in pending:
            written += predict_range(
                run, record, "score.chunk", {**base, "start": start, "stop": stop}
            )["written"]
            task.advance()
    except FedsiloError:
        if run.cancel.cancelled:  # cancelled: no partial score table (a failure keeps it)
            _discard(run, at)
        raise
    task.finish()
    run.log(f"scored {written} rows into {table} (resumed past {plan['already_scored']})")
    return {
        "model": model_id,
        "table": table,
        "rows": plan["rows"],
        "written": written,
        "already_scored": plan["already_scored"],
    }


def _discard(run: JobRun, at: str) -> None:
    """Best effort: the scoring silo deletes what this cancelled step wrote."""
    try:
        run.cleanup_call(at, "score.abort")
    except FedsiloError as err:
        run.log(f"scores written before the cancel could not be deleted at {at}: {err}")
