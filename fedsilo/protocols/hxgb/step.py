"""The ``hxgb`` job step's table, read the same way by the coordinator and by every member.

::

    [[steps]]
    kind = "hxgb"                  # every party of the job has role "member"; three or more
    name = "credit-hxgb"           # optional registry name (default: JOB-hxgb)
    n_estimators = 30              # any XGBoost parameter of docs/jobs.md
    max_depth = 3
    max_bin = 32
    early_stopping_rounds = 5      # needs validation_fraction > 0
    validation_fraction = 0.1      # share of its rows each member holds out for the pooled loss
    evaluate_on = { party = "guest", dataset = "test" }   # optional: held-out data at one member

Keys, defaults and bounds are declared once in :mod:`fedsilo.protocols.hxgb.schema`. Why both sides
parse it: the coordinator refuses a bad step before any silo is contacted, and a member trusts only
the job spec it accepted at ``OpenJob``. The coordinator names the step by its index; each member
reads the parameters (and where evaluation happens) from its own copy of the spec, so a coordinator
cannot train deeper trees, or read another dataset, than the silos agreed to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from fedsilo.errors import ConfigError
from fedsilo.jobschema import check_step
from fedsilo.ml.step_spec import EvaluateOn, step_entry
from fedsilo.protocols.hxgb.training import HxgbParams, check_silo_count

__all__ = ["KIND", "ROLE", "EvaluateOn", "HxgbStep", "key_holder", "members_of", "step_at"]

KIND = "hxgb"
ROLE = "member"


@dataclass(frozen=True)
class HxgbStep:
    """One ``hxgb`` step: training parameters and the job-level options around them."""

    params: HxgbParams
    validation_fraction: float = 0.0
    evaluate_on: EvaluateOn | None = None
    name: str | None = None

    @classmethod
    def from_step(cls, step: Mapping[str, Any], index: int | None = None) -> HxgbStep:
        """Parse a step table checked by the job schema (:mod:`fedsilo.jobschema`); unknown
        keys and bad values are ConfigErrors naming the step (``index``) and key."""
        if step.get("kind") != KIND:
            raise ConfigError(f"not an '{KIND}' step")
        values = check_step(step, index)
        params = HxgbParams(**{f.name: values[f.name] for f in fields(HxgbParams)})
        return cls(
            params=params,
            validation_fraction=float(values["validation_fraction"]),
            evaluate_on=EvaluateOn.optional(values["evaluate_on"], KIND),
            name=values["name"],
        )

    def check_members(self, members: Sequence[str]) -> None:
        """The evaluating party must be a member (the count is :func:`members_of`'s job)."""
        if self.evaluate_on is not None:
            self.evaluate_on.check_member(members, KIND)


def members_of(parties: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The job's members, sorted; refuses other roles and fewer than three members.

    Fewer than three is a :class:`~fedsilo.errors.PolicyError` saying why (a sum of two inputs
    minus one's own is the other's), raised before any data is read.
    """
    others = sorted(p for p, v in parties.items() if v.get("role") != ROLE)
    if others:
        raise ConfigError(f"an hxgb step needs every party in role '{ROLE}' ('{others[0]}' is not)")
    members = sorted(parties)
    check_silo_count(len(members))
    return members


def key_holder(members: Sequence[str]) -> str:
    """The member that makes the job's CKKS key: the first by name, so every party agrees."""
    return sorted(members)[0]


def step_at(steps: Any, index: Any) -> HxgbStep:
    """Step number ``index`` of a job spec's step list, which must be an ``hxgb`` step.

    For members: ``index`` comes from the coordinator, ``steps`` from the spec they accepted.
    """
    return HxgbStep.from_step(step_entry(steps, index, KIND))
