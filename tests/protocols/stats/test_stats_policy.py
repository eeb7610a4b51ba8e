"""The ``stats`` and ``stability`` switches (off by default, only true/false), the ``quantiles``
key's type, and a coordinator that names the wrong parties to a silo's stats party."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedsilo.errors import ConfigError, ProtocolError
from fedsilo.jobschema import check_step
from fedsilo.protocols.stats.party import StatsParams, StatsParty
from fedsilo.silo_node.config import load_silo_config

CONFIG = """party = "bank"
listen = "127.0.0.1:7001"
database = "sqlite:///bank.db"

[tls]
insecure_plaintext = true

[datasets.customers]
table = "customers"
id_column = "customer_id"
features = ["PAY_0", "PAY_2"]

[policy]
protocols = ["stats", "stability"]
roles = ["passive"]
"""


def _policy(tmp_path: Path, extra: str = "") -> object:
    path = tmp_path / "silo.toml"
    path.write_text(CONFIG + extra)
    return load_silo_config(path).policy


def test_the_release_switches_are_off_by_default_and_only_booleans(tmp_path: Path) -> None:
    off = _policy(tmp_path)
    assert off.release_statistics is False and off.release_stability is False  # type: ignore[attr-defined]
    on = _policy(tmp_path, "release_statistics = true\nrelease_stability = true\n")
    assert on.release_statistics is True and on.release_stability is True  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="'release_statistics' must be true or false"):
        _policy(tmp_path, 'release_statistics = "yes"\n')


def test_quantiles_must_be_distinct_fractions() -> None:
    assert check_step({"kind": "stats"}, 0)["quantiles"] == [0.05, 0.25, 0.5, 0.75, 0.95]
    assert check_step({"kind": "stats", "quantiles": [0.1, 0.9]}, 0)["quantiles"] == [0.1, 0.9]
    for bad in ([0.0, 0.5], [0.5, 1.0], [0.5, 0.5], [], "0.5"):
        with pytest.raises(ConfigError, match="'quantiles'"):
            check_step({"kind": "stats", "quantiles": bad}, 0)
    with pytest.raises(ConfigError, match="'train_alignment' is required"):
        check_step({"kind": "stability"}, 0)
    with pytest.raises(ConfigError, match="'score_version' is required with score_table"):
        check_step({"kind": "stability", "train_alignment": "t", "score_table": "s"}, 0)


def _party(name: str, seed: int) -> StatsParty:
    x = np.random.default_rng(seed).normal(size=(200, 3))
    params = StatsParams((0.5,), True, 1024, 10, True, 1024)
    party = StatsParty(name, x, ["a", "b", "c"], params)
    party.profile()
    return party


def test_a_party_refuses_steps_out_of_order_or_for_other_parties() -> None:
    a, b = _party("a", 1), _party("b", 2)
    with pytest.raises(ProtocolError, match="before stats.encrypt"):
        a.open({})
    with pytest.raises(ProtocolError, match="other silos"):
        a.encrypt(["a"])
    msg = a.encrypt(["b"])
    with pytest.raises(ProtocolError, match="already encrypted"):
        a.encrypt(["b"])
    replies = b.cross({"a": msg})
    with pytest.raises(ProtocolError, match=r"expected cross products from \['b'\]"):
        a.open({"c": replies["a"]})
    block = a.open({"b": replies["a"]})["b"]
    want = np.corrcoef(np.hstack([a.x, b.x]).T)[:3, 3:]
    assert np.abs(np.asarray(block) - want).max() < 1e-6
    with pytest.raises(ProtocolError, match="before stats.encrypt"):
        a.open({"b": replies["a"]})  # each block is opened once


def test_too_few_rows_correlate_nothing() -> None:
    x = np.random.default_rng(0).normal(size=(8, 2))
    party = StatsParty("a", x, ["a", "b"], StatsParams((0.5,), True, 1024, 10, True, 1024))
    meta = party.profile()
    assert meta["correlated"] == [] and meta["local"] == []
    assert meta["excluded"] == {"a": "too few rows", "b": "too few rows"}
    assert meta["columns"]["a"]["mean"] is None
