"""Driver of the `lr` step: vertical logistic regression (Paillier) between the label holder and
the passive silos.

::

    [[steps]]
    kind = "lr"
    alignment = "x-train"        # optional: defaults to the split's train alignment, else PSI's
    key_bits = 2048              # the label holder's Paillier key (each silo's policy sets a floor)
    name = "default-risk-lr"     # optional registry name (default: job name + "-lr")
    l2 = 4.2e-5                  # scikit-learn's C = 1 / (l2 * rows); every key of docs/jobs.md
    learning_rate = 2.0          # is flat in the step table, like secureboost's
    lr_schedule = "step"         # constant | step | inverse
    lr_decay = 0.5
    batch_size = 2048
    max_iter = 10                # epochs
    tol = 1e-3                   # stop when the epoch's loss falls by less than this fraction
    class_weight = "balanced"    # or [w0, w1], or leave out
    seed = 0

Per mini-batch the coordinator relays five rounds of sealed envelopes (partial predictors,
encrypted residuals, masked gradients, opened gradients); it learns sizes, the epoch count and
the training loss the label holder releases (``docs/leakage.md``).

Resumed job (``run_job(..., resume=True)``): the label holder restores the last epoch it closed
and replies it (with the released history) at ``lr.setup``; the passive silos restore their
weights after that epoch; silos that disagree are refused; training goes on at the next epoch.
"""

from __future__ import annotations

from typing import Any

from fedsilo.coordinator.config import JobSpec
from fedsilo.coordinator.conversation import JobParties
from fedsilo.coordinator.drivers import driver, index_of
from fedsilo.coordinator.jobrun import JobRun
from fedsilo.coordinator.models import record_model
from fedsilo.errors import ConfigError
from fedsilo.jobschema import check_step, step_label
from fedsilo.jobspec import train_alignments
from fedsilo.ml.lr_common import LRConfig
from fedsilo.protocols.lr import conversation
from fedsilo.protocols.lr.conversation import Start

__all__ = ["check", "run_lr", "train_alignment"]


def train_alignment(run: JobRun, step: dict[str, Any]) -> str:
    """The step's `alignment`, else the split's training part, else the PSI alignment (as the
    silos read it from the spec, :func:`fedsilo.jobspec.train_alignments`)."""
    return train_alignments(run.wire_spec, run.step_index)[0]


def check(spec: JobSpec, step: dict[str, Any]) -> None:
    """Refuse what the spec alone shows is wrong: parameters and roles."""
    index = index_of(spec, step)
    LRConfig.from_step(step, index)
    passives, actives = spec.parties_with_role("passive"), spec.parties_with_role("active")
    if len(actives) != 1 or not passives or len(actives) + len(passives) != len(spec.parties):
        raise ConfigError(
            f"{step_label(index, 'lr')}: needs one label holder (role 'active') and "
            "passive parties only"
        )


def _scorecard(step: dict[str, Any], run: JobRun) -> dict[str, Any]:
    """A scorecard's scale for the registry record (``transform = "woe"``), else nothing."""
    values = check_step(step, run.step_index)
    if values["transform"] != "woe":
        return {}
    return {"scorecard": {k: values[k] for k in ("base_score", "base_odds", "pdo")}}


@driver("lr", check=check)
def run_lr(run: JobRun, step: dict[str, Any]) -> dict[str, Any]:
    check(run.spec, step)
    config = LRConfig.from_step(step, run.step_index)
    active, passives = run.active(), run.with_role("passive")
    alignment = train_alignment(run, step)
    task = run.progress.task("vertical LR epochs", total=config.max_iter)

    def started(start: Start) -> None:
        run.log(f"lr: {start.rows} aligned rows, {len(passives)} passive silo(s)")
        if start.epoch:
            run.log(f"lr resumed at epoch {start.epoch}")
            task.advance(start.epoch)

    def epoch_done(meta: dict[str, Any]) -> None:
        task.advance()
        run.log(f"lr epoch {meta['epoch']}: training loss {meta['train_loss']:.5f}")

    trained = conversation.run(
        JobParties(run),
        active=active,
        passives=passives,
        config=config,
        on_start=started,
        on_epoch=epoch_done,
    )
    task.finish()
    rows, history = trained.rows, trained.history
    last = history[-1]
    model = record_model(
        run,
        kind="lr",
        params=config.to_spec(),
        alignment=alignment,
        metrics={"train_loss": last["train_loss"]},
        extra={"epochs": len(history), "converged": last["converged"], **_scorecard(step, run)},
        name=step.get("name"),
    )
    return {
        "model": model.model_id,
        "epochs": len(history),
        "converged": last["converged"],
        "train_loss": last["train_loss"],
        "rows": rows,
    }
