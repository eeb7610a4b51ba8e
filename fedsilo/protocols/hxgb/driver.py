"""Driver of the `hxgb` step: horizontal XGBoost over CKKS secure sums, three members or more.

::

    [[steps]]
    kind = "hxgb"                  # every party has role "member"
    n_estimators = 30              # any HxgbParams field; see fedsilo/protocols/hxgb/step.py
    max_depth = 3
    evaluate_on = { party = "guest", dataset = "test" }   # optional

Refusals that follow from the spec (fewer than three members, bad parameters) happen in
:func:`check`, before any silo is contacted; every member checks the same again itself.

Sequence: ``hxgb.start`` at every member (the key holder seals the secret CKKS context to the
others and releases the public one), ``hxgb.keys`` (everyone releases its binning update), then
one ``hxgb.round`` per secure sum: the coordinator adds the members' ciphertexts with
:class:`~fedsilo.protocols.hxgb.training.Aggregator`, which holds the public context only, and sends
the sum to every member, which releases its next update, until every member reports "done". Then
``hxgb.finish`` (every member stores the same whole model; digests must agree) and, if the step
names one, ``hxgb.evaluate`` at that member. The registry gets released figures only: tree count,
best iteration, pooled validation loss per tree, the evaluating member's headline metrics.
"""

from __future__ import annotations

from typing import Any

from fedsilo.coordinator.config import JobSpec
from fedsilo.coordinator.drivers import driver
from fedsilo.coordinator.jobrun import JobRun
from fedsilo.coordinator.models import part_id, record_model
from fedsilo.errors import JobError
from fedsilo.message import Message
from fedsilo.protocols.hxgb.step import KIND, HxgbStep, key_holder, members_of
from fedsilo.protocols.hxgb.training import PUBLIC_CONTEXT, UPDATE, Aggregator
from fedsilo.wire import StepPayload

__all__ = ["check", "run_hxgb"]

_PHASES = ("hist", "eval", "done")


def check(spec: JobSpec, step: dict[str, Any]) -> None:
    """Refuse what the spec alone shows is wrong: parameters, roles, fewer than three members."""
    members = members_of(spec.parties)
    HxgbStep.from_step(step).check_members(members)


def _released(reply: StepPayload, party: str, kind: str) -> Message:
    if reply.plain is None:
        raise JobError(f"'{party}' released no '{kind}' message")
    return reply.plain.expect(kind)


def _setup(
    run: JobRun,
    members: list[str],
    meta: dict[str, Any],
) -> tuple[Aggregator, dict[str, StepPayload]]:
    """Sessions read their data and share the key; returns the aggregator and the bins updates."""
    started = run.call_many({p: ("hxgb.start", meta, []) for p in members})
    if len({str(r.meta.get("columns_digest")) for r in started.values()}) != 1:
        raise JobError("hxgb members name different feature columns (names and order must match)")
    holder = key_holder(members)
    public = _released(started[holder], holder, PUBLIC_CONTEXT).blob("context")
    aggregator = Aggregator(public, len(members))
    sealed = started[holder]
    updates = run.call_many({p: ("hxgb.keys", {}, sealed.outbox_for(p)) for p in members})
    return aggregator, updates


def _agreed(replies: dict[str, StepPayload]) -> dict[str, Any]:
    """The round status every member released; they must be identical."""
    statuses = [r.meta for r in replies.values()]
    status = statuses[0]
    if any(s != status for s in statuses[1:]):
        raise JobError("hxgb members disagree about the model's progress")
    if status.get("next") not in _PHASES or not isinstance(status.get("tree"), int):
        raise JobError("hxgb member released a malformed round status")
    return status


def _train(
    run: JobRun,
    members: list[str],
    aggregator: Aggregator,
    updates: dict[str, StepPayload],
    step: HxgbStep,
) -> tuple[int, list[float]]:
    """Secure sums until every member is done; returns (rounds, pooled validation losses)."""
    n_trees = step.params.n_estimators
    task = run.progress.task("hxgb trees", total=n_trees)
    done, losses = 0, []
    max_rounds = 2 + n_trees * (step.params.max_depth + 2)
    for rounds in range(1, max_rounds + 1):
        total = aggregator.sum([_released(updates[p], p, UPDATE) for p in members])
        updates = run.call_many({p: ("hxgb.round", {}, []) for p in members}, plain=total)
        status = _agreed(updates)
        finished = status["tree"] + (1 if status["next"] in ("eval", "done") else 0)
        task.advance(finished - done)
        done = finished
        if status.get("valid_loss") is not None:
            losses.append(float(status["valid_loss"]))
            run.log(f"hxgb tree {done}: pooled validation log-loss {losses[-1]:.5f}")
        if status["next"] == "done":
            task.finish()
            return rounds, losses
    raise JobError(f"hxgb did not finish within {max_rounds} rounds")


def _finish(run: JobRun, members: list[str], model_part: str) -> dict[str, Any]:
    """Every member stores the model; the digests they release must agree."""
    replies = run.call_many({p: ("hxgb.finish", {}, []) for p in members})
    if len({str(r.meta.get("digest")) for r in replies.values()}) != 1:
        raise JobError("hxgb members ended with different models")
    return dict(replies[members[0]].meta)


def _evaluate(
    run: JobRun, step: HxgbStep, meta: dict[str, Any], model_id: str, model_part: str
) -> dict[str, Any]:
    """Headline metrics of the model on the held-out dataset at the member the step names."""
    assert step.evaluate_on is not None
    party = step.evaluate_on.party
    out = run.call(party, "hxgb.evaluate", {**meta, "model": model_id})
    run.log(
        f"evaluated {model_id} at {party} on '{step.evaluate_on.dataset}': AUC "
        f"{out.meta['metrics'].get('auc')} (member alone: "
        f"{out.meta['metrics'].get('member_only_auc')}); report at {party}: "
        f"{out.meta.get('report')}"
    )
    return dict(out.meta)


@driver(KIND, check=check)
def run_hxgb(run: JobRun, step: dict[str, Any]) -> dict[str, Any]:
    check(run.spec, step)
    parsed = HxgbStep.from_step(step)
    members = members_of(run.spec.parties)
    meta = {"step": run.spec.steps.index(step)}
    run.log(f"hxgb between {', '.join(members)} (CKKS key made at {key_holder(members)})")
    aggregator, updates = _setup(run, members, meta)
    rounds, losses = _train(run, members, aggregator, updates, parsed)
    model_part = part_id(run, KIND)
    saved = _finish(run, members, model_part)
    metrics: dict[str, Any] = {"trees": saved["trees"], "best_iteration": saved["best_iteration"]}
    if losses:
        metrics["valid_loss"] = losses
    params = {**parsed.params.to_dict(), "validation_fraction": parsed.validation_fraction}
    record = record_model(
        run,
        kind=KIND,
        params=params,
        alignment=None,
        metrics=metrics,
        extra={"silos": len(members), "rounds": rounds, "export": saved["export"]},
        name=parsed.name,
    )
    out = {
        "model": record.model_id,
        "trees": saved["trees"],
        "rounds": rounds,
        "silos": len(members),
        "valid_loss": losses,
        "export": saved["export"],
    }
    if parsed.evaluate_on is not None:
        evaluation = _evaluate(run, parsed, meta, record.model_id, model_part)
        where = {"party": parsed.evaluate_on.party, "dataset": parsed.evaluate_on.dataset}
        metrics.update(evaluation["metrics"], evaluated_on=where)
        run.store.update_model(record.model_id, {**record.record, "metrics": metrics})
        out.update(metrics=evaluation["metrics"], report=evaluation.get("report"))
    run.log(f"hxgb: {saved['trees']} trees in {rounds} secure sums; model {record.model_id}")
    return out
