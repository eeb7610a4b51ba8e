"""Driver of the `hlr` step: horizontal logistic regression over CKKS secure sums, >= 3 silos.

::

    [[steps]]
    kind = "hlr"                 # every party has role "member"
    name = "default-risk-hlr"    # optional registry name
    [steps.params]               # fedsilo.ml.lr_horizontal.HLRConfig; all optional
    l2 = 4.2e-5
    learning_rate = 0.5          # local SGD step, decayed per round
    lr_decay = 0.8
    batch_size = 256             # local mini-batch rows
    local_epochs = 1
    max_epochs = 30              # rounds
    tol = 1e-3                   # stop when no coefficient moves more than this in a round

The coordinator holds the public CKKS context (no secret key), adds the silos' ciphertexts with
:func:`fedsilo.ml.lr_horizontal.aggregate` and hands the sum back; it never reads a value.
"""

from __future__ import annotations

from typing import Any

from fedsilo.coordinator.jobrun import JobRun
from fedsilo.coordinator.models import part_id, record_model
from fedsilo.coordinator.protocols import driver
from fedsilo.errors import ConfigError, JobError
from fedsilo.message import Message
from fedsilo.ml.lr_horizontal import STATS_PHASES, HLRConfig, aggregate, check_silo_count

__all__ = ["run_hlr"]

_STEP_KEYS = {"kind", "name", "params"}


def _config(step: dict[str, Any]) -> HLRConfig:
    unknown = sorted(set(step) - _STEP_KEYS)
    if unknown:
        raise ConfigError(f"step 'hlr' has unknown key '{unknown[0]}'")
    params = step.get("params", {})
    if not isinstance(params, dict):
        raise ConfigError("step 'hlr': [steps.params] must be a table")
    return HLRConfig.from_spec(params)


def _setup(run: JobRun, members: list[str], meta: dict[str, Any]) -> bytes:
    """Key at the first member, secret context to the others; returns the public context."""
    first = run.call(members[0], "hlr.setup", meta)
    rest = run.call_many({p: ("hlr.setup", meta, first.outbox_for(p)) for p in members[1:]})
    digests = {first.meta["columns_digest"], *(r.meta["columns_digest"] for r in rest.values())}
    if len(digests) != 1:
        raise JobError("horizontal LR silos name different feature columns")
    if first.plain is None:
        raise JobError(f"'{members[0]}' released no public CKKS context")
    return first.plain.expect("hlr.public_context").blob("context")


def _round(
    run: JobRun, members: list[str], public: bytes, meta: dict[str, Any], previous: Message | None
) -> tuple[Message | None, dict[str, Any]]:
    """One relay: the previous sum out, contributions in; returns (their sum, released meta)."""
    replies = run.call_many({p: ("hlr.round", meta, []) for p in members}, plain=previous)
    released = [r.meta for r in replies.values()]
    if any(m != released[0] for m in released):
        raise JobError("horizontal LR silos disagree about the model's progress")
    contributions = [r.plain for r in replies.values() if r.plain is not None]
    if not contributions:
        return None, released[0]
    if len(contributions) != len(members):
        raise JobError("some horizontal LR silos released no contribution")
    return aggregate(public, contributions), released[0]


@driver("hlr")
def run_hlr(run: JobRun, step: dict[str, Any]) -> dict[str, Any]:
    config = _config(step)
    members = run.with_role("member")
    if set(members) != set(run.parties):
        raise ConfigError("an hlr step needs every party in role 'member'")
    check_silo_count(len(members))
    public = _setup(run, members, {"params": config.to_spec()})
    total: Message | None = None
    for index in range(STATS_PHASES):
        total, _ = _round(run, members, public, {"next": "stats", "index": index}, total)
    run.log(f"hlr: pooled standardisation over {len(members)} silos done")
    progress: dict[str, Any] = {}
    for index in range(config.max_epochs + 1):
        total, progress = _round(run, members, public, {"next": "round", "index": index}, total)
        if total is None:
            break
        if progress:
            run.log(f"hlr round {progress['round']}: largest change {progress['max_change']:.2e}")
    run.call_many({p: ("hlr.save", {"model_id": part_id(run, "hlr")}, []) for p in members})
    rounds = int(progress.get("round", -1)) + 1
    model = record_model(
        run,
        kind="hlr",
        params=config.to_spec(),
        alignment=None,
        extra={"rounds": rounds, "silos": len(members)},
        name=step.get("name"),
    )
    return {"model": model.model_id, "rounds": rounds, "max_change": progress.get("max_change")}
