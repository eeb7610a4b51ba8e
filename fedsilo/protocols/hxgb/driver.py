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
from fedsilo.coordinator.conversation import JobParties
from fedsilo.coordinator.drivers import driver
from fedsilo.coordinator.jobrun import JobRun
from fedsilo.coordinator.models import part_id, record_model
from fedsilo.protocols.hxgb import conversation
from fedsilo.protocols.hxgb.step import KIND, HxgbStep, key_holder, members_of

__all__ = ["check", "run_hxgb"]


def check(spec: JobSpec, step: dict[str, Any]) -> None:
    """Refuse what the spec alone shows is wrong: parameters, roles, fewer than three members."""
    members = members_of(spec.parties)
    HxgbStep.from_step(step).check_members(members)


def _train(run: JobRun, members: list[str], step: HxgbStep) -> conversation.Trained:
    """The conversation, with progress by finished tree and the pooled losses logged."""
    task = run.progress.task("hxgb trees", total=step.params.n_estimators)
    done = 0

    def round_done(status: dict[str, Any]) -> None:
        nonlocal done
        finished = status["tree"] + (1 if status["next"] in ("eval", "done") else 0)
        task.advance(finished - done)
        done = finished
        if status.get("valid_loss") is not None:
            run.log(
                f"hxgb tree {done}: pooled validation log-loss {float(status['valid_loss']):.5f}"
            )
        if status["next"] == "done":
            task.finish()

    return conversation.run(JobParties(run), members, params=step.params, on_round=round_done)


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
    trained = _train(run, members, parsed)
    rounds, losses, saved = trained.rounds, trained.valid_losses, trained.saved
    model_part = part_id(run, KIND)
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
