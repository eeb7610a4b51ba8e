"""Driver of the `split` step: a stratified train/validation/test split of an alignment."""

from __future__ import annotations

from typing import Any

from fedsilo.coordinator.jobrun import JobRun
from fedsilo.coordinator.protocols import driver
from fedsilo.errors import ConfigError


def alignment_of(run: JobRun, step: dict[str, Any]) -> str:
    """The alignment a step works on: its own `alignment` key, else the one PSI just made."""
    name = step.get("alignment") or run.results.get("psi", {}).get("alignment")
    if not name:
        raise ConfigError(f"step '{step['kind']}' needs 'alignment' (or a psi step before it)")
    return str(name)


@driver("split")
def run_split(run: JobRun, step: dict[str, Any]) -> dict[str, Any]:
    alignment = alignment_of(run, step)
    meta = {
        "alignment": alignment,
        "test_fraction": float(step.get("test_fraction", 0.2)),
        "valid_fraction": float(step.get("valid_fraction", 0.0)),
        "seed": int(step.get("seed", 42)),
    }
    active = run.active()
    drawn = run.call(active, "split.draw", meta)
    others = [p for p in run.parties if p != active]
    run.call_many({p: ("split.apply", {}, drawn.outbox_for(p)) for p in others})
    out = {
        "alignment": alignment,
        "sizes": drawn.meta["sizes"],
        **{part: f"{alignment}-{part}" for part in ("train", "valid", "test")},
    }
    run.log(f"split {alignment}: {drawn.meta['sizes']}")
    return out
