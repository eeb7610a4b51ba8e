"""Driver of the ``stats`` step: column statistics everywhere, then the correlation matrix.

::

    [[steps]]
    kind = "stats"
    alignment = "default-risk"     # default: the psi step's
    quantiles = [0.05, 0.5, 0.95]
    correlation = true

The step's result (the job record's ``"<n>:stats"``, and ``run.results["stats"]`` for later
steps of the same job): ``rows`` per silo; ``columns``: statistics by ``party.column``;
``correlation``: ``columns`` (labels in matrix order), ``matrix`` (Pearson, ``None`` where
nothing was released) and ``excluded`` (columns left out, with the reason); ``vif``: by
label (``None``: unbounded). Column names are ``#i`` for a silo that does not release them.
"""

from __future__ import annotations

from typing import Any

from fedsilo.coordinator.conversation import JobParties
from fedsilo.coordinator.drivers import driver
from fedsilo.coordinator.jobrun import JobRun
from fedsilo.jobschema import check_step
from fedsilo.jobspec import input_alignment
from fedsilo.protocols.stats import conversation


@driver("stats")
def run_stats(run: JobRun, step: dict[str, Any]) -> dict[str, Any]:
    values = check_step(step, run.step_index)
    aligned = values["population"] == "alignment"
    population = input_alignment(run.wire_spec, run.step_index) if aligned else "dataset"
    result = conversation.run(
        JobParties(run), run.parties, correlate=bool(values["correlation"]) and aligned
    )
    matrix = result.get("correlation", {}).get("columns", [])
    run.log(
        f"stats over {population}: {len(result['columns'])} columns profiled, "
        f"{len(matrix)} in the correlation matrix"
    )
    return {"population": population, **result}
