"""The `hxgb` job step table: what the coordinator refuses before anything runs, and what a member
accepts from the coordinator (a step index into the spec it accepted, nothing else)."""

from __future__ import annotations

from typing import Any

import pytest

from fedsilo.errors import ConfigError, PolicyError, ProtocolError
from fedsilo.protocols.hxgb import step as hxgb_step
from fedsilo.protocols.hxgb.step import EvaluateOn, HxgbStep, key_holder, members_of, step_at

MEMBERS = {p: {"role": "member", "dataset": "main"} for p in ("c", "a", "b")}


def test_parameters_and_options_are_read() -> None:
    step = HxgbStep.from_step(
        {
            "kind": "hxgb",
            "n_estimators": 5,
            "max_depth": 2,
            "early_stopping_rounds": 2,
            "validation_fraction": 0.2,
            "evaluate_on": {"party": "a", "dataset": "test"},
            "name": "m",
        }
    )
    assert step.params.n_estimators == 5 and step.params.max_depth == 2
    assert step.validation_fraction == 0.2 and step.name == "m"
    assert step.evaluate_on == EvaluateOn("a", "test")


@pytest.mark.parametrize(
    "extra, reason",
    [
        ({"n_trees": 3}, "step \\(hxgb\\): unknown key .n_trees."),
        ({"max_depth": 0}, "max_depth"),
        ({"validation_fraction": 0.9}, "validation_fraction"),
        ({"validation_fraction": True}, "validation_fraction"),
        ({"early_stopping_rounds": 3}, "needs .validation_fraction."),
        ({"evaluate_on": {"party": "a"}}, "evaluate_on"),
        ({"evaluate_on": "a"}, "evaluate_on"),
        ({"name": ""}, "name"),
    ],
)
def test_bad_steps_are_config_errors(extra: dict[str, Any], reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        HxgbStep.from_step({"kind": "hxgb", **extra})


def test_members_three_or_more_and_nothing_else() -> None:
    assert members_of(MEMBERS) == ["a", "b", "c"]
    assert key_holder(["c", "b", "a"]) == "a"
    with pytest.raises(PolicyError, match="at least 3 silos, got 2: with two"):
        members_of({"a": MEMBERS["a"], "b": MEMBERS["b"]})
    with pytest.raises(ConfigError, match="role 'member'"):
        members_of({**MEMBERS, "d": {"role": "active", "dataset": "main"}})
    with pytest.raises(ConfigError, match="not a member"):
        HxgbStep.from_step(
            {"kind": "hxgb", "evaluate_on": {"party": "z", "dataset": "t"}}
        ).check_members(["a", "b", "c"])


def test_a_member_reads_only_its_own_copy_of_the_step() -> None:
    steps = [{"kind": "noop"}, {"kind": "hxgb", "max_depth": 2}]
    assert step_at(steps, 1).params.max_depth == 2
    for index in (0, 2, -1, "1", True, None):
        with pytest.raises(ProtocolError):
            step_at(steps, index)
    with pytest.raises(ProtocolError):
        step_at("not a list", 0)


def test_exported_names() -> None:
    assert sorted(hxgb_step.__all__) == sorted(
        ["KIND", "ROLE", "EvaluateOn", "HxgbStep", "key_holder", "members_of", "step_at"]
    )
