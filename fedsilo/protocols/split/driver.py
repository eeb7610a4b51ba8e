"""Driver of the `split` step: a stratified train/validation/test split of an alignment."""

from __future__ import annotations

from typing import Any

from fedsilo.coordinator.drivers import driver
from fedsilo.coordinator.jobrun import JobRun
from fedsilo.jobspec import input_alignment, split_settings


def alignment_of(run: JobRun, step: dict[str, Any]) -> str:
    """The alignment a step works on: its own `alignment`, else the one a psi step before it made
    (read from the spec as the silos read it, :func:`fedsilo.jobspec.input_alignment`)."""
    return input_alignment(run.wire_spec, run.step_index)


@driver("split")
def run_split(run: JobRun, step: dict[str, Any]) -> dict[str, Any]:
    alignment = split_settings(run.wire_spec, run.step_index).alignment
    active = run.active()
    drawn = run.call(active, "split.draw")
    others = [p for p in run.parties if p != active]
    run.call_many({p: ("split.apply", {}, drawn.outbox_for(p)) for p in others})
    out = {
        "alignment": alignment,
        "sizes": drawn.meta["sizes"],
        **{part: f"{alignment}-{part}" for part in ("train", "valid", "test")},
    }
    run.log(f"split {alignment}: {drawn.meta['sizes']}")
    return out
