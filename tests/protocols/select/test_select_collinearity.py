"""Selection by VIF / correlation: the coordinator's decision against a pooled numpy computation
(VIF as the diagonal of the inverse correlation matrix), the silo's verdict, the preflight."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from credit_demo import demo_table, pooled

from fedsilo.coordinator.config import parse_job_spec
from fedsilo.coordinator.drivers import check_job
from fedsilo.errors import ConfigError, ProtocolError
from fedsilo.protocols.select.criteria import (
    choose,
    collinear_drops,
    correlation_drops,
    vif_drops,
)
from fedsilo.silo_node.demo_data import DEMO_PARTIES


def _pooled_vif_drops(x: np.ndarray, labels: list[str], threshold: float) -> list[str]:
    """Reference: the backward VIF procedure recomputing np.corrcoef on the pooled columns."""
    left = list(range(x.shape[1]))
    out = []
    while len(left) > 1:
        values = np.diag(np.linalg.inv(np.corrcoef(x[:, left].T)))
        worst = int(np.argmax(values))
        if values[worst] <= threshold:
            break
        out.append(labels[left.pop(worst)])
    return out


def _synthetic(seed: int = 7) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(2000, 4))
    x = np.column_stack(
        [
            base,
            base[:, 0] + 0.1 * rng.normal(size=2000),  # near copy of column 0
            base[:, 1] + base[:, 2] + 0.3 * rng.normal(size=2000),  # near sum of 1 and 2
            rng.normal(size=2000),
        ]
    )
    return x, [f"s{i % 3}.c{i}" for i in range(x.shape[1])]


def _credit_pooled() -> tuple[np.ndarray, list[str]]:
    """The demo silos' columns over the customers all three hold."""
    ids = sorted(set.intersection(*(set(demo_table(p)) for p in DEMO_PARTIES)))
    columns = pooled(ids)
    labels = [f"{p}.{c}" for p in DEMO_PARTIES for c in DEMO_PARTIES[p][2]]
    return np.hstack([columns[p] for p in DEMO_PARTIES]), labels


@pytest.mark.parametrize("threshold", [2.0, 5.0, 10.0])
def test_vif_drops_match_the_pooled_procedure(threshold: float) -> None:
    for x, labels in (_synthetic(), _credit_pooled()):
        matrix = np.corrcoef(x.T).tolist()
        expected = _pooled_vif_drops(x, labels, threshold)
        assert vif_drops(labels, matrix, threshold) == expected
        # after the drops every VIF left is within the threshold, and one more drop was needed
        left = [i for i, label in enumerate(labels) if label not in expected]
        assert np.diag(np.linalg.inv(np.corrcoef(x[:, left].T))).max() <= threshold


def test_credit_vif_drops_the_collinear_bill_amounts_across_silos() -> None:
    x, labels = _credit_pooled()
    dropped = vif_drops(labels, np.corrcoef(x.T).tolist(), 5.0)
    assert dropped and all(".BILL_AMT" in d for d in dropped)
    assert {d.split(".")[0] for d in dropped} == {"bureau", "lender"}


def test_correlation_drops_the_later_of_each_pair() -> None:
    x, labels = _synthetic()
    r = np.abs(np.corrcoef(x.T))
    got = correlation_drops(labels, np.corrcoef(x.T).tolist(), 0.9)
    assert got == ["s1.c4"]  # the near copy of column 0
    kept = [i for i, label in enumerate(labels) if label not in got]
    off = r[np.ix_(kept, kept)] - np.eye(len(kept))
    assert off.max() <= 0.9
    # a chain a~b~c above the threshold drops b only (a dropped column removes no other)
    chain = [[1.0, 0.95, 0.85], [0.95, 1.0, 0.95], [0.85, 0.95, 1.0]]
    assert correlation_drops(["a", "b", "c"], chain, 0.9) == ["b"]


def test_both_criteria_vif_after_correlation_and_incomplete_matrix_refused() -> None:
    x, labels = _synthetic()
    matrix = np.corrcoef(x.T).tolist()
    both = collinear_drops({"max_correlation": 0.9, "max_vif": 2.0}, labels, matrix)
    assert both["max_correlation"] == ["s1.c4"]
    rest = [i for i, label in enumerate(labels) if label != "s1.c4"]
    assert both["max_vif"] == _pooled_vif_drops(x[:, rest], [labels[i] for i in rest], 2.0)
    matrix[0][1] = matrix[1][0] = None
    with pytest.raises(ProtocolError, match="incomplete"):
        vif_drops(labels, matrix, 5.0)


def test_silo_keeps_what_the_coordinator_did_not_drop_and_every_criterion_holds() -> None:
    values: dict[str, Any] = {
        "min_iv": 0.05,
        "max_vif": 5.0,
        "importance": None,
        "max_correlation": None,
        "top_k": None,
        "keep_at_least": 1,
    }
    inputs = {
        "iv": lambda: {"a": 0.3, "b": 0.2, "c": 0.01, "d": 0.1},
        "dropped": lambda: {"max_vif": ["b"]},
    }
    assert choose(values, ["a", "b", "c", "d"], inputs) == ["a", "d"]
    only_vif = {**values, "min_iv": None}
    assert choose(only_vif, ["a", "b", "c", "d"], inputs) == ["a", "c", "d"]


def _raw(steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": "j",
        "parties": {
            "a": {"dataset": "d", "role": "active"},
            "b": {"dataset": "d", "role": "passive"},
        },
        "steps": steps,
    }


@pytest.mark.parametrize("key,value", [("max_vif", 5.0), ("max_correlation", 0.9)])
def test_collinearity_without_a_stats_correlation_before_is_refused(key: str, value: float) -> None:
    for before in (
        [{"kind": "psi"}],
        [{"kind": "psi"}, {"kind": "stats", "correlation": False}],
        [{"kind": "psi"}, {"kind": "stats", "population": "dataset"}],
    ):
        raw = _raw([*before, {"kind": "select", key: value}])
        with pytest.raises(ConfigError, match=f"'{key}' needs a stats step with a correlation"):
            check_job(parse_job_spec(raw, Path("job.toml")))
    raw = _raw([{"kind": "psi"}, {"kind": "stats"}, {"kind": "select", key: value}])
    check_job(parse_job_spec(raw, Path("job.toml")))


def test_silo_reads_only_a_decision_naming_its_own_columns() -> None:
    from types import SimpleNamespace

    from fedsilo.protocols.select.silo import _dropped
    from fedsilo.silo_node.methods import CallRequest

    ctx: Any = SimpleNamespace(job_columns=lambda session: ["age", "income", "debt"])
    values = {"max_vif": 5.0, "max_correlation": None}

    def read(meta: dict[str, Any]) -> dict[str, list[str]]:
        return _dropped(ctx, None, CallRequest(meta=meta), values)  # type: ignore[arg-type]

    # by name, or #i (the i-th column the stats step profiled) for a silo without names
    assert read({"dropped": {"max_vif": ["income", "#2"]}}) == {"max_vif": ["income", "debt"]}
    for bad in (["salary"], ["#3"], ["#-1"], ["bureau.income"]):
        with pytest.raises(ProtocolError, match="not a column of mine"):
            read({"dropped": {"max_vif": bad}})
    with pytest.raises(ProtocolError, match="no collinearity decision"):
        read({})
    with pytest.raises(ProtocolError, match="no 'max_vif' decision"):
        read({"dropped": {"max_correlation": []}})
