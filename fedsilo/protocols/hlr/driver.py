"""Driver of the `hlr` step: horizontal logistic regression over CKKS secure sums, >= 3 silos.

::

    [[steps]]
    kind = "hlr"                 # every party has role "member"
    name = "default-risk-hlr"    # optional registry name
    evaluate_on = { party = "bank", dataset = "test" }   # optional: held-out data at one member
    l2 = 4.2e-5                  # every key of docs/jobs.md is flat in the step table
    learning_rate = 0.5          # local SGD step, decayed per round
    lr_decay = 0.8
    batch_size = 256             # local mini-batch rows
    local_epochs = 1
    max_iter = 30                # rounds
    tol = 1e-3                   # stop when no coefficient moves more than this in a round

The coordinator holds the public CKKS context (no secret key), adds the silos' ciphertexts with
:func:`fedsilo.protocols.hlr.horizontal.aggregate` and hands the sum back; it never reads a value.
Members read the step (parameters, ``evaluate_on``) from their own copy of the job spec; the
coordinator names it by index. With ``evaluate_on``, ``hlr.evaluate`` runs at that member after
the model is saved (as for ``hxgb``): the registry gets its released headline metrics.
"""

from __future__ import annotations

from typing import Any

from fedsilo.coordinator.config import JobSpec
from fedsilo.coordinator.conversation import JobParties
from fedsilo.coordinator.drivers import driver
from fedsilo.coordinator.jobrun import JobRun
from fedsilo.coordinator.models import part_id, record_model
from fedsilo.errors import ConfigError
from fedsilo.protocols.hlr import conversation
from fedsilo.protocols.hlr.horizontal import check_silo_count
from fedsilo.protocols.hlr.step import KIND, HlrStep

__all__ = ["check", "run_hlr"]


def check(spec: JobSpec, step: dict[str, Any]) -> None:
    """Refuse what the spec alone shows is wrong: keys, parameters, roles, the evaluating party."""
    parsed = HlrStep.from_step(step)
    members = spec.parties_with_role("member")
    if set(members) != set(spec.parties):
        raise ConfigError("an hlr step needs every party in role 'member'")
    if parsed.evaluate_on is not None:
        parsed.evaluate_on.check_member(members, KIND)


def _evaluate(
    run: JobRun, step: HlrStep, meta: dict[str, Any], model_id: str, model_part: str
) -> dict[str, Any]:
    """Headline metrics of the model on the held-out dataset at the member the step names."""
    assert step.evaluate_on is not None
    party = step.evaluate_on.party
    out = run.call(party, "hlr.evaluate", {**meta, "model": model_id})
    metrics = out.meta["metrics"]
    run.log(
        f"evaluated {model_id} at {party} on '{step.evaluate_on.dataset}': AUC "
        f"{metrics.get('auc')} (member alone: {metrics.get('member_only_auc')}); report at "
        f"{party}: {out.meta.get('report')}"
    )
    return dict(out.meta)


@driver(KIND, check=check)
def run_hlr(run: JobRun, step: dict[str, Any]) -> dict[str, Any]:
    check(run.spec, step)
    parsed = HlrStep.from_step(step)
    config = parsed.config
    members = run.with_role("member")
    check_silo_count(len(members))
    meta = {"step": run.spec.steps.index(step)}
    task = run.progress.task("horizontal LR rounds (at most)", total=config.max_iter + 1)
    progress = conversation.run(
        JobParties(run),
        members,
        max_iter=config.max_iter,
        log=run.log,
        on_round=lambda _released: task.advance(),
    )
    task.finish()
    model_part = part_id(run, KIND)
    rounds = int(progress.get("round", -1)) + 1
    model = record_model(
        run,
        kind=KIND,
        params=config.to_spec(),
        alignment=None,
        extra={"rounds": rounds, "silos": len(members)},
        name=parsed.name,
    )
    out: dict[str, Any] = {
        "model": model.model_id,
        "rounds": rounds,
        "max_change": progress.get("max_change"),
    }
    if parsed.evaluate_on is not None:
        evaluation = _evaluate(run, parsed, meta, model.model_id, model_part)
        metrics = {**evaluation["metrics"], "evaluated_on": parsed.evaluate_on.to_dict()}
        run.store.update_model(model.model_id, {**model.record, "metrics": metrics})
        out.update(metrics=evaluation["metrics"], report=evaluation.get("report"))
    return out
