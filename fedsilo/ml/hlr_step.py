"""The ``hlr`` job step's table, read the same way by the coordinator and by every member.

::

    [[steps]]
    kind = "hlr"                   # every party has role "member"; three or more
    name = "default-risk-hlr"      # optional registry name
    evaluate_on = { party = "bank", dataset = "test" }   # optional: held-out data at one member
    [steps.params]                 # fedsilo.ml.lr_horizontal.HLRConfig; all optional
    l2 = 4.2e-5

Why both sides parse it: the coordinator refuses a bad step before any silo is contacted, and a
member reads the parameters and where evaluation happens from the spec it accepted at
``OpenJob`` (the coordinator names the step by index), like ``hxgb``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fedsilo.errors import ConfigError
from fedsilo.ml.lr_horizontal import HLRConfig
from fedsilo.ml.step_spec import EvaluateOn, step_entry

__all__ = ["KIND", "HlrStep", "step_at"]

KIND = "hlr"
_STEP_KEYS = frozenset({"kind", "name", "params", "evaluate_on"})


@dataclass(frozen=True)
class HlrStep:
    """One ``hlr`` step: training parameters and the job-level options around them."""

    config: HLRConfig
    evaluate_on: EvaluateOn | None = None
    name: str | None = None

    @classmethod
    def from_step(cls, step: Mapping[str, Any]) -> HlrStep:
        """Parse and check a step table; unknown keys and bad values are ConfigErrors."""
        if step.get("kind") != KIND:
            raise ConfigError(f"not an '{KIND}' step")
        unknown = sorted(set(step) - _STEP_KEYS)
        if unknown:
            raise ConfigError(f"step 'hlr' has unknown key '{unknown[0]}'")
        params = step.get("params", {})
        if not isinstance(params, Mapping):
            raise ConfigError("step 'hlr': [steps.params] must be a table")
        name = step.get("name")
        if name is not None and (not isinstance(name, str) or not name):
            raise ConfigError("step 'hlr': name must be a non-empty string")
        return cls(config=HLRConfig.from_spec(dict(params)),
                   evaluate_on=EvaluateOn.optional(step.get("evaluate_on"), KIND), name=name)


def step_at(steps: Any, index: Any) -> HlrStep:
    """Step number ``index`` of the job spec a member accepted, which must be an ``hlr`` step."""
    return HlrStep.from_step(step_entry(steps, index, KIND))
