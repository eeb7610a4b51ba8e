"""The ``hxgb`` job step's table, read the same way by the coordinator and by every member.

::

    [[steps]]
    kind = "hxgb"                  # every party of the job has role "member"; three or more
    name = "credit-hxgb"           # optional registry name (default: JOB-hxgb)
    n_estimators = 30              # any HxgbParams field (fedsilo/ml/hxgb.py)
    max_depth = 3
    max_bin = 32
    early_stopping_rounds = 5      # needs validation_fraction > 0
    validation_fraction = 0.1      # share of its rows each member holds out for the pooled loss
    evaluate_on = { party = "guest", dataset = "test" }   # optional: held-out data at one member

Why both sides parse it: the coordinator refuses a bad step before any silo is contacted, and a
member trusts only the job spec it accepted at ``OpenJob``. The coordinator names the step by its
index; each member reads the parameters (and where evaluation happens) from its own copy of the
spec, so a coordinator cannot train deeper trees, or read another dataset, than the silos agreed to.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fedsilo.errors import ConfigError
from fedsilo.ml.hxgb import HxgbParams, check_silo_count
from fedsilo.ml.step_spec import EvaluateOn, step_entry

__all__ = ["KIND", "ROLE", "EvaluateOn", "HxgbStep", "key_holder", "members_of", "step_at"]

KIND = "hxgb"
ROLE = "member"
#: step keys that are not training parameters
_OWN_KEYS = frozenset({"kind", "name", "validation_fraction", "evaluate_on"})
#: largest share of a member's rows held out for validation: the rest must train
_MAX_VALIDATION_FRACTION = 0.5


@dataclass(frozen=True)
class HxgbStep:
    """One ``hxgb`` step: training parameters and the job-level options around them."""

    params: HxgbParams
    validation_fraction: float = 0.0
    evaluate_on: EvaluateOn | None = None
    name: str | None = None

    @classmethod
    def from_step(cls, step: Mapping[str, Any]) -> HxgbStep:
        """Parse and check a step table; unknown keys and bad values are ConfigErrors."""
        if step.get("kind") != KIND:
            raise ConfigError(f"not an '{KIND}' step")
        params = HxgbParams.from_dict({k: v for k, v in step.items() if k not in _OWN_KEYS})
        fraction = step.get("validation_fraction", 0.0)
        if isinstance(fraction, bool) or not isinstance(fraction, int | float) \
                or not (0 <= fraction <= _MAX_VALIDATION_FRACTION and math.isfinite(fraction)):
            raise ConfigError(f"step 'hxgb': validation_fraction must be in "
                              f"[0, {_MAX_VALIDATION_FRACTION}]")
        if params.early_stopping_rounds and fraction == 0:
            raise ConfigError("step 'hxgb': early_stopping_rounds needs validation_fraction > 0")
        raw_eval = step.get("evaluate_on")
        name = step.get("name")
        if name is not None and (not isinstance(name, str) or not name):
            raise ConfigError("step 'hxgb': name must be a non-empty string")
        return cls(params=params, validation_fraction=float(fraction),
                   evaluate_on=EvaluateOn.optional(raw_eval, KIND),
                   name=name)

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
        raise ConfigError(f"an hxgb step needs every party in role '{ROLE}' ('{others[0]}' "
                          "is not)")
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
