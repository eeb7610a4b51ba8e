"""Driver of the `secureboost` step: vertical XGBoost between the label holder and passive silos.

::

    [[steps]]
    kind = "secureboost"
    alignment = "x-train"        # default: the split step's train alignment, else the PSI one
    valid_alignment = "x-valid"  # default: the split's validation alignment when it has rows
    n_estimators = 30            # any secureboost key of docs/jobs.md (its schema.py)
    max_depth = 3
    learning_rate = 0.3
    max_bin = 32
    early_stopping_rounds = 5    # needs validation rows

The coordinator relays sealed messages only: ``sgb.setup`` at the label holder, then at every
passive silo; then rounds of ``sgb.step`` (label holder) and ``sgb.handle`` (the silos it
addressed, concurrently) until the label holder is done; then ``sgb.save`` everywhere and a
registry record with what the label holder released (tree count, validation loss).

Resumed job (``run_job(..., resume=True)``): every silo restores its checkpoint of the last
completed tree at ``sgb.setup`` and replies where it resumes; the driver refuses silos that
disagree, logs "secureboost resumed at tree k" and counts progress from there.
"""

from __future__ import annotations

from typing import Any

from fedsilo.coordinator.config import JobSpec
from fedsilo.coordinator.drivers import driver, index_of
from fedsilo.coordinator.jobrun import JobRun
from fedsilo.coordinator.models import record_model
from fedsilo.coordinator.resume import resumed_at
from fedsilo.errors import ConfigError, JobError
from fedsilo.jobschema import step_label
from fedsilo.jobspec import train_alignments
from fedsilo.protocols.secureboost.params import SecureBoostParams, secureboost_params
from fedsilo.wire import StepPayload

__all__ = ["check", "run_secureboost"]

KIND = "secureboost"
#: rounds per tree are ~3 per level plus validation; this bounds a runaway label holder
_MAX_ROUNDS_PER_TREE = 200


def _to_active(run: JobRun, replies: dict[str, StepPayload]) -> list[Any]:
    active = run.active()
    return [env for reply in replies.values() for env in reply.outbox_for(active)]


def _train(run: JobRun, params: SecureBoostParams, max_rounds: int) -> StepPayload:
    active, passives = run.active(), run.with_role("passive")
    first = run.call(active, "sgb.setup")
    replies = run.call_many({p: ("sgb.setup", {}, first.outbox_for(p)) for p in passives})
    done_trees = resumed_at({active: first, **replies}, "tree")
    if done_trees:
        run.log(f"secureboost resumed at tree {done_trees}")
    task = run.progress.task("SecureBoost trees", total=params.n_estimators)
    if done_trees:
        task.advance(done_trees)
    for _ in range(max_rounds):
        reply = run.call(active, "sgb.step", {}, _to_active(run, replies))
        trees = int(reply.meta.get("trees", 0))
        task.advance(max(0, trees - done_trees))
        done_trees = max(done_trees, trees)
        if reply.meta.get("done") is True:
            task.finish()
            return reply
        targets = {env.recipient for env in reply.envelopes}
        if not targets or not targets <= set(passives):
            raise JobError("SecureBoost: the label holder addressed no passive silo or a stranger")
        replies = run.call_many(
            {p: ("sgb.handle", {}, reply.outbox_for(p)) for p in sorted(targets)}
        )
    raise JobError("SecureBoost did not finish within its round budget")


def check(spec: JobSpec, step: dict[str, Any]) -> None:
    """Refuse what the spec alone shows is wrong: roles, parameters, early stopping without
    validation rows (before PSI has run, not after)."""
    index = index_of(spec, step)
    passives, actives = spec.parties_with_role("passive"), spec.parties_with_role("active")
    if len(actives) != 1 or not passives or len(actives) + len(passives) != len(spec.parties):
        raise ConfigError(
            f"{step_label(index, KIND)}: needs one label holder (role 'active') and "
            "passive parties only"
        )
    params = secureboost_params(step, index)
    _train, valid = train_alignments(spec.to_wire(""), index)
    if params.early_stopping_rounds and not valid:
        raise ConfigError(
            f"{step_label(index, KIND)}: 'early_stopping_rounds' needs a "
            "validation alignment (valid_alignment, or a split's valid_fraction)"
        )


@driver(KIND, check=check)
def run_secureboost(run: JobRun, step: dict[str, Any]) -> dict[str, Any]:
    check(run.spec, step)
    params = secureboost_params(step, run.step_index)
    train, _valid = train_alignments(run.wire_spec, run.step_index)
    run.log(f"secureboost: {params.n_estimators} trees, depth {params.max_depth} on {train}")
    _train(run, params, _MAX_ROUNDS_PER_TREE * params.n_estimators + 10)
    saved = run.call_many({p: ("sgb.save", {}, []) for p in run.parties})
    released = saved[run.active()].meta
    metrics = {"trees": int(released.get("trees", 0)), **dict(released.get("metrics", {}))}
    model = record_model(
        run,
        kind=KIND,
        params=params.to_dict(),
        alignment=train,
        metrics=metrics,
        name=step.get("name"),
    )
    return {"model": model.model_id, "trees": metrics["trees"], "alignment": train}
