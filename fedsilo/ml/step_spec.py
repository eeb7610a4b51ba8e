"""Pieces of a training step's table that several step kinds share (``hxgb``, ``hlr``).

A member of a horizontal job trusts only the job spec it accepted at ``OpenJob``: the coordinator
names a step by its index and each member reads that step (its parameters, where evaluation
happens) from its own copy. Both horizontal kinds do this the same way, so it lives here once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fedsilo.errors import ConfigError, ProtocolError

__all__ = ["EvaluateOn", "step_entry"]


@dataclass(frozen=True)
class EvaluateOn:
    """A held-out dataset at one member: a whole model is scored there, locally."""

    party: str
    dataset: str

    @classmethod
    def from_table(cls, raw: Any, kind: str = "hxgb") -> EvaluateOn:
        """Parse ``{ party = ..., dataset = ... }``; ``kind`` names the step in errors."""
        if not isinstance(raw, Mapping) or set(raw) != {"party", "dataset"}:
            raise ConfigError(
                f"step '{kind}': evaluate_on must be {{ party = ..., dataset = ... }}"
            )
        party, dataset = raw["party"], raw["dataset"]
        if not (isinstance(party, str) and party and isinstance(dataset, str) and dataset):
            raise ConfigError(f"step '{kind}': evaluate_on party and dataset must be names")
        return cls(party, dataset)

    @classmethod
    def optional(cls, raw: Any, kind: str) -> EvaluateOn | None:
        """``None`` when the step has no ``evaluate_on`` key, else the parsed table."""
        return None if raw is None else cls.from_table(raw, kind)

    def check_member(self, members: Sequence[str], kind: str) -> None:
        """The evaluating party must be a member of the job (it holds the whole model)."""
        if self.party not in members:
            raise ConfigError(
                f"step '{kind}': evaluate_on party '{self.party}' is not a member of the job"
            )

    def to_dict(self) -> dict[str, str]:
        return {"party": self.party, "dataset": self.dataset}


def step_entry(steps: Any, index: Any, kind: str) -> Mapping[str, Any]:
    """Step number ``index`` of a job spec's step list, which must be a ``kind`` step.

    For members: ``index`` comes from the coordinator, ``steps`` from the spec they accepted, so
    a coordinator cannot point a member at parameters (or a dataset) it did not agree to.
    """
    if (
        isinstance(index, bool)
        or not isinstance(index, int)
        or not isinstance(steps, list)
        or not 0 <= index < len(steps)
    ):
        raise ProtocolError(f"{kind} step index is not a step of the accepted job")
    entry = steps[index]
    if not isinstance(entry, Mapping) or entry.get("kind") != kind:
        raise ProtocolError(f"{kind} step index names a step of another kind")
    return entry
