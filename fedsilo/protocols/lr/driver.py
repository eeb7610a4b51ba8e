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

from dataclasses import dataclass
from typing import Any

from fedsilo.coordinator.config import JobSpec
from fedsilo.coordinator.drivers import driver, index_of
from fedsilo.coordinator.jobrun import Call, JobRun
from fedsilo.coordinator.models import record_model
from fedsilo.coordinator.resume import resumed_at
from fedsilo.errors import ConfigError, JobError
from fedsilo.jobschema import step_label
from fedsilo.jobspec import train_alignments
from fedsilo.ml.lr_common import LRConfig, epoch_batches
from fedsilo.wire import Envelope, StepPayload

__all__ = ["check", "run_lr", "train_alignment"]

def train_alignment(run: JobRun, step: dict[str, Any]) -> str:
    """The step's `alignment`, else the split's training part, else the PSI alignment (as the
    silos read it from the spec, :func:`fedsilo.jobspec.train_alignments`)."""
    return train_alignments(run.wire_spec, run.step_index)[0]


def _to(replies: dict[str, StepPayload], party: str) -> list[Envelope]:
    return [env for reply in replies.values() for env in reply.outbox_for(party)]


@dataclass
class _Start:
    """Where training starts: the common row count, the first epoch and the epochs done."""

    rows: int
    epoch: int
    history: list[dict[str, Any]]


def _setup(run: JobRun, active: str, passives: list[str]) -> _Start:
    """Key to the passive silos, pair seeds between them; where (which epoch) training starts.

    On a resumed run the label holder says at which epoch its checkpoint resumes; the passive
    silos are told, and all must agree (:func:`resumed_at`).
    """
    keyed = run.call(active, "lr.setup")
    start_epoch = int(keyed.meta.get("resumed_at", 0))
    passive_meta = {"start_epoch": start_epoch}
    replies = run.call_many(
        {p: ("lr.setup", passive_meta, keyed.outbox_for(p)) for p in passives}
    )
    rows = {active: keyed.meta["rows"], **{p: r.meta["rows"] for p, r in replies.items()}}
    if len(set(rows.values())) != 1:
        raise JobError(f"silos hold different numbers of aligned rows: {rows}")
    resumed_at({active: keyed, **replies}, "epoch")
    seeded: dict[str, Call] = {
        p: ("lr.pair_seeds", {}, _to(replies, p)) for p in passives if _to(replies, p)
    }
    if seeded:
        run.call_many(seeded)
    history = [dict(h) for h in keyed.meta.get("history", [])][:start_epoch]
    if len(history) != start_epoch:
        raise JobError("the label holder resumed without the history of its epochs")
    return _Start(rows=int(rows[active]), epoch=start_epoch, history=history)


def _batch(run: JobRun, active: str, passives: list[str], epoch: int, batch: int) -> None:
    where = {"epoch": epoch, "batch": batch}
    partials = run.call_many({p: ("lr.partial", where, []) for p in passives})
    residuals = run.call(active, "lr.residuals", where, _to(partials, active))
    masked = run.call_many({p: ("lr.gradient", {}, residuals.outbox_for(p)) for p in passives})
    opened = run.call(active, "lr.open", {}, _to(masked, active))
    run.call_many({p: ("lr.apply", {}, opened.outbox_for(p)) for p in passives})


def check(spec: JobSpec, step: dict[str, Any]) -> None:
    """Refuse what the spec alone shows is wrong: parameters and roles."""
    index = index_of(spec, step)
    LRConfig.from_step(step, index)
    passives, actives = spec.parties_with_role("passive"), spec.parties_with_role("active")
    if len(actives) != 1 or not passives or len(actives) + len(passives) != len(spec.parties):
        raise ConfigError(f"{step_label(index, 'lr')}: needs one active party and passive "
                          "parties only")


@driver("lr", check=check)
def run_lr(run: JobRun, step: dict[str, Any]) -> dict[str, Any]:
    check(run.spec, step)
    config = LRConfig.from_step(step, run.step_index)
    active, passives = run.active(), run.with_role("passive")
    alignment = train_alignment(run, step)
    start = _setup(run, active, passives)
    rows, history = start.rows, start.history
    run.log(f"lr: {rows} aligned rows, {len(passives)} passive silo(s)")
    task = run.progress.task("vertical LR epochs", total=config.max_iter)
    if start.epoch:
        run.log(f"lr resumed at epoch {start.epoch}")
        task.advance(start.epoch)
    stopped = bool(history) and bool(history[-1].get("stop"))
    for epoch in range(start.epoch, 0 if stopped else config.max_iter):
        for batch in range(len(epoch_batches(rows, config.batch_size, epoch, config.seed))):
            _batch(run, active, passives, epoch, batch)
        history.append(run.call(active, "lr.end_epoch", {"epoch": epoch}).meta)
        task.advance()
        run.log(f"lr epoch {epoch}: training loss {history[-1]['train_loss']:.5f}")
        if history[-1]["stop"]:
            break
    task.finish()
    run.call_many({p: ("lr.save", {}, []) for p in run.parties})
    last = history[-1]
    model = record_model(
        run,
        kind="lr",
        params=config.to_spec(),
        alignment=alignment,
        metrics={"train_loss": last["train_loss"]},
        extra={"epochs": len(history), "converged": last["converged"]},
        name=step.get("name"),
    )
    return {
        "model": model.model_id,
        "epochs": len(history),
        "converged": last["converged"],
        "train_loss": last["train_loss"],
        "rows": rows,
    }
