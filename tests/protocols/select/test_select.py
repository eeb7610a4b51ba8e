"""Selection criteria in process: IV, importance from a model part, top-k and the floor."""

from __future__ import annotations

import pytest

from fedsilo.errors import ConfigError, ProtocolError
from fedsilo.protocols.select.criteria import choose, importance_of_part


def test_select_keeps_by_iv_top_k_and_a_floor() -> None:
    iv = {"a": 0.5, "b": 0.01, "c": 0.2, "d": 0.0}
    inputs = {"iv": lambda: iv}
    values = {"min_iv": 0.1, "top_k": None, "keep_at_least": 1, "importance": None}
    assert choose(values, list(iv), inputs) == ["a", "c"]
    assert choose({**values, "top_k": 1}, list(iv), inputs) == ["a"]
    assert choose({**values, "min_iv": 0.9}, list(iv), inputs) == ["a"]  # the best one stays
    both = {**values, "importance": "lr", "min_importance": 0.05}
    imp = {"importance": lambda: {"a": 0.01, "b": 1.0, "c": 0.3, "d": 2.0}, **inputs}
    assert choose(both, list(iv), imp) == ["c"]


def test_importance_of_own_columns_from_model_parts() -> None:
    lr = {"columns": ["a", "b"], "part": {"standardised": {"coef": [-0.5, 0.25]}}}
    assert importance_of_part("lr", lr) == {"a": 0.5, "b": 0.25}
    splits = [[0, 0, 1, 0.5, True], [0, 1, 1, 0.2, False], [1, 0, 2, 3.0, True]]
    passive = {"columns": ["a", "b", "c"], "part": {"splits": splits}}
    assert importance_of_part("secureboost", passive) == {"a": 0.0, "b": 2.0, "c": 1.0}
    holder = {"columns": ["a", "b", "c"], "model": {"own_splits": {"splits": splits[:1]}}}
    assert importance_of_part("secureboost", holder) == {"a": 0.0, "b": 1.0, "c": 0.0}
    with pytest.raises(ProtocolError, match="no importance"):
        importance_of_part("hxgb", lr)


def test_a_criterion_without_its_earlier_step_is_refused_before_any_silo() -> None:
    from pathlib import Path

    from fedsilo.coordinator.config import parse_job_spec
    from fedsilo.coordinator.drivers import check_job

    raw = {
        "name": "j",
        "parties": {
            "a": {"dataset": "d", "role": "active"},
            "b": {"dataset": "d", "role": "passive"},
        },
        "steps": [{"kind": "psi"}, {"kind": "select", "importance": "lr"}],
    }
    with pytest.raises(ConfigError, match="'importance' needs a lr step"):
        check_job(parse_job_spec(raw, Path("job.toml")))
    raw["steps"] = [{"kind": "psi"}, {"kind": "select", "min_iv": 0.1}]
    with pytest.raises(ConfigError, match="'min_iv' needs a woe step"):
        check_job(parse_job_spec(raw, Path("job.toml")))
