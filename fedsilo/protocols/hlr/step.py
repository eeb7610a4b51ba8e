"""The ``hlr`` job step's table, read the same way by the coordinator and by every member.

::

    [[steps]]
    kind = "hlr"                   # every party has role "member"; three or more
    name = "default-risk-hlr"      # optional registry name
    evaluate_on = { party = "bank", dataset = "test" }   # optional: held-out data at one member
    l2 = 4.2e-5                    # any hlr parameter of docs/jobs.md (flat, like hxgb's)

Why both sides parse it: the coordinator refuses a bad step before any silo is contacted, and a
member reads the parameters and where evaluation happens from the spec it accepted at
``OpenJob`` (the coordinator names the step by index), like ``hxgb``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fedsilo.errors import ConfigError
from fedsilo.jobschema import check_step
from fedsilo.ml.step_spec import EvaluateOn, step_entry
from fedsilo.protocols.hlr.horizontal import HLRConfig

__all__ = ["KIND", "HlrStep", "step_at"]

KIND = "hlr"


@dataclass(frozen=True)
class HlrStep:
    """One ``hlr`` step: training parameters and the job-level options around them."""

    config: HLRConfig
    evaluate_on: EvaluateOn | None = None
    name: str | None = None

    @classmethod
    def from_step(cls, step: Mapping[str, Any], index: int | None = None) -> HlrStep:
        """Parse a step table checked by the job schema (:mod:`fedsilo.jobschema`); unknown
        keys and bad values are ConfigErrors naming the step (``index``) and key."""
        if step.get("kind") != KIND:
            raise ConfigError(f"not an '{KIND}' step")
        values = check_step(step, index)
        return cls(
            config=HLRConfig.from_step(step, index),
            evaluate_on=EvaluateOn.optional(values["evaluate_on"], KIND),
            name=values["name"],
        )


def step_at(steps: Any, index: Any) -> HlrStep:
    """Step number ``index`` of the job spec a member accepted, which must be an ``hlr`` step."""
    return HlrStep.from_step(step_entry(steps, index, KIND))
