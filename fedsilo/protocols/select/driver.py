"""Driver of the ``select`` step: every silo keeps those of its own columns that pass.

::

    [[steps]]
    kind = "select"
    min_iv = 0.02                 # from the last woe step (each silo: the IV it holds)
    importance = "secureboost"    # and/or: a model this job trained before
    min_importance = 0
    max_vif = 5.0                 # and/or: from the last stats step's correlation matrix
    max_correlation = 0.9
    top_k = 5                     # per silo

The coordinator learns how many columns each silo kept; which, only the silo knows. For
``max_vif`` / ``max_correlation`` the coordinator itself decides which columns of the stats
step's released correlation matrix are dropped (:func:`collinear_drops`) and tells each silo
only the decision for its own columns; the step's result lists the dropped labels.
"""

from __future__ import annotations

from typing import Any

from fedsilo.coordinator.config import JobSpec
from fedsilo.coordinator.drivers import driver, index_of
from fedsilo.coordinator.jobrun import JobRun
from fedsilo.errors import ConfigError, JobError
from fedsilo.jobschema import check_step, step_label
from fedsilo.jobspec import previous_step
from fedsilo.protocols.select.criteria import COLLINEARITY_KEYS, collinear_drops

__all__ = ["check", "run_select"]


def check(spec: JobSpec, step: dict[str, Any]) -> None:
    """Each criterion's input must come from an earlier step of the job."""
    index = index_of(spec, step)
    values = check_step(step, index)
    wire = {"steps": spec.steps}
    needs = {"min_iv": "woe", "importance": values["importance"]}
    for key, kind in needs.items():
        if values[key] is not None and previous_step(wire, index, str(kind)) is None:
            raise ConfigError(
                f"{step_label(index, 'select')}: '{key}' needs a {kind} step before it in the job"
            )
    for key in COLLINEARITY_KEYS:
        if values[key] is None:
            continue
        at = previous_step(wire, index, "stats")
        stats = None if at is None else check_step(spec.steps[at], at)
        if stats is None or not stats["correlation"] or stats["population"] != "alignment":
            raise ConfigError(
                f"{step_label(index, 'select')}: '{key}' needs a stats step with a correlation "
                "matrix (correlation = true over an alignment) before it in the job"
            )


def _own(run: JobRun, labels: list[str]) -> dict[str, list[str]]:
    """Split ``party.column`` labels by party (the longest party name that prefixes one)."""
    out: dict[str, list[str]] = {p: [] for p in run.parties}
    for label in labels:
        owners = [p for p in run.parties if label.startswith(f"{p}.")]
        if not owners:
            raise JobError(f"select: correlation column '{label}' names no party of the job")
        owner = max(owners, key=len)
        out[owner].append(label[len(owner) + 1 :])
    return out


def _decide(run: JobRun, values: dict[str, Any]) -> dict[str, list[str]]:
    """Per collinearity criterion given, the dropped labels (``party.column``) in drop order."""
    if not any(values[k] is not None for k in COLLINEARITY_KEYS):
        return {}
    stats = run.results.get("stats")
    correlation = stats.get("correlation") if isinstance(stats, dict) else None
    if not isinstance(correlation, dict):
        raise JobError("select: the stats step before it released no correlation matrix")
    labels = [str(c) for c in correlation["columns"]]
    return collinear_drops(values, labels, correlation["matrix"])


@driver("select", check=check)
def run_select(run: JobRun, step: dict[str, Any]) -> dict[str, Any]:
    decided = _decide(run, check_step(step, run.step_index))
    mine = {k: _own(run, labels) for k, labels in decided.items()}
    replies = run.call_many(
        {
            p: ("select.apply", {"dropped": {k: by[p] for k, by in mine.items()}}, [])
            for p in run.parties
        }
    )
    kept = {p: {"kept": int(r.meta["kept"]), "of": int(r.meta["of"])} for p, r in replies.items()}
    run.log("select: " + ", ".join(f"{p} keeps {k['kept']} of {k['of']}" for p, k in kept.items()))
    out: dict[str, Any] = {"kept": kept}
    if decided:
        out["dropped"] = decided
        run.log(
            "select: dropped for collinearity: "
            + "; ".join(f"{k} {', '.join(v) or '(none)'}" for k, v in out["dropped"].items())
        )
    return out
