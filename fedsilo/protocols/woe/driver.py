"""Driver of the ``woe`` step: WOE / IV binning of every silo's characteristics.

::

    [[steps]]
    kind = "woe"
    max_bins = 10                        # quantile bins before small ones are merged
    monotonic = true                     # merge adjacent bins until the event rate is monotonic
    categorical = ["SEX", "EDUCATION"]   # binned by value (each silo: its own columns)
    key_bits = 2048                      # the label holder's Paillier key

The coordinator relays sealed envelopes and records only counts: characteristics and bins per
silo, and which results went back to each owner (``docs/leakage.md``, ``docs/scorecard.md``).
"""

from __future__ import annotations

from typing import Any

from fedsilo.coordinator.config import JobSpec
from fedsilo.coordinator.conversation import JobParties
from fedsilo.coordinator.drivers import driver, index_of
from fedsilo.coordinator.jobrun import JobRun
from fedsilo.errors import ConfigError
from fedsilo.jobschema import step_label
from fedsilo.protocols.woe import conversation

__all__ = ["check", "run_woe"]


def check(spec: JobSpec, step: dict[str, Any]) -> None:
    """One label holder, and passive silos only."""
    index = index_of(spec, step)
    passives, actives = spec.parties_with_role("passive"), spec.parties_with_role("active")
    if len(actives) != 1 or len(actives) + len(passives) != len(spec.parties):
        raise ConfigError(
            f"{step_label(index, 'woe')}: needs one label holder (role 'active') and "
            "passive parties only"
        )


@driver("woe", check=check)
def run_woe(run: JobRun, step: dict[str, Any]) -> dict[str, Any]:
    check(run.spec, step)
    active, passives = run.active(), run.with_role("passive")
    result = conversation.run(JobParties(run), active=active, passives=passives)
    chars = result["characteristics"]
    run.log(f"woe: {sum(chars.values())} characteristics binned over {result['rows']} rows")
    return result
