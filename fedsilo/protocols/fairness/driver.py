"""Driver of the ``fairness`` step: the conversation over the job, metrics to the registry.

::

    [[steps]]
    kind = "fairness"
    attributes = ["SEX", "AGE"]          # at the attribute holder (default: the only passive)
    bands = { AGE = [25, 35, 45, 55] }
    thresholds = [0.5]
    model = "..."                        # default: the model the job's score step used, or
                                         # the test scores the job's evaluate step kept
"""

from __future__ import annotations

from typing import Any

from fedsilo.coordinator.config import JobSpec
from fedsilo.coordinator.conversation import JobParties
from fedsilo.coordinator.drivers import driver, index_of
from fedsilo.coordinator.jobrun import JobRun
from fedsilo.errors import ConfigError, NotFound
from fedsilo.jobschema import step_label
from fedsilo.protocols.fairness import conversation
from fedsilo.protocols.fairness.spec import fairness_step


def check(spec: JobSpec, step: dict[str, Any]) -> None:
    """The attribute holder must be a passive party; scores must be named or scored before."""
    index = index_of(spec, step)
    wire = spec.to_wire("")
    read = fairness_step(wire, index)
    scored = any(s.get("kind") in ("score", "evaluate") for s in wire["steps"][:index])
    if read.model is None and not scored:
        raise ConfigError(
            f"{step_label(index, 'fairness')}: needs 'model' (the score version in the table) "
            "or a score or evaluate step before it"
        )


def _version(run: JobRun, model: str | None, evaluated: bool) -> str:
    """The scores' model: the step's, else the one the job's evaluate or score step used."""
    if model:
        return model
    result = run.results.get("evaluate" if evaluated else "score")
    if isinstance(result, dict) and "model" in result:
        return str(result["model"])
    raise ConfigError("fairness step: no score or evaluate step before it recorded a model")


@driver("fairness", check=check)
def run_fairness(run: JobRun, step: dict[str, Any]) -> dict[str, Any]:
    read = fairness_step(run.wire_spec, run.step_index)
    version = _version(run, read.model, read.evaluate_index is not None)
    meta = {"version": version}
    if read.attribute_party == run.active():  # the label holder holds the attributes: no crypto
        done = JobParties(run).call(run.active(), "fairness.local", meta)
        groups = done
    else:
        groups, done = conversation.run(
            JobParties(run),
            label_holder=run.active(),
            attribute_holder=read.attribute_party,
            meta=meta,
        )
    metrics = done.meta["metrics"]
    try:
        record = run.store.get_model(version).record
        run.store.update_model(version, {**record, "fairness": metrics})
    except NotFound:
        run.log(f"fairness: scores of '{version}' are not a registered model; not recorded there")
    withheld = groups.meta.get("withheld", {})
    run.log(
        f"fairness audit of {version}: {len(metrics['groups'])} groups released by "
        f"{read.attribute_party}, withheld {withheld}; "
        f"report at {run.active()}: {done.meta['report']}"
    )
    return {
        "model": version,
        "attribute_party": read.attribute_party,
        "withheld": withheld,
        "metrics": metrics,
        "report": done.meta["report"],
    }
