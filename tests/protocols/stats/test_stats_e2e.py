"""The ``stats`` step end to end over real gRPC under mTLS, three silos on the bundled credit
demo data (bank = label holder, bureau, lender), real 2048-bit Paillier keys: statistics equal
the pooled computation, the 23-column correlation matrix is within 1e-6 of numpy's on the pooled
columns, a statistic below an owner's minimum is withheld, each silo's ledger shows what it
revealed, and a silo whose policy does not release statistics refuses."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from credit_demo import ROLES, consortium, demo_table, pooled
from support import Consortium

from fedsilo.coordinator.orchestrator import run_job
from fedsilo.errors import JobError, PolicyError
from fedsilo.silo_node.demo_data import DEMO_PARTIES

pytestmark = pytest.mark.e2e

RELEASE = "release_statistics = true\nrelease_feature_names = true\n"


@pytest.fixture(scope="module")
def credit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Consortium]:
    c = consortium(
        tmp_path_factory.mktemp("stats"),
        {"bank": RELEASE, "bureau": RELEASE + "min_rows_per_statistic = 2000\n", "lender": RELEASE},
    )
    yield c
    c.stop_all()


def test_stats_match_the_pooled_data_and_every_ledger_shows_its_release(
    credit: Consortium,
) -> None:
    steps = [{"kind": "psi", "alignment": "common"}, {"kind": "stats"}]
    record = run_job(credit.job(ROLES, steps), clients=credit.clients(), store=credit.store())
    out = record.result["2:stats"]
    ids = [
        i for chunk in credit.nodes["bank"].ctx.store.iter_alignment_ids("common") for i in chunk
    ]
    assert out["population"] == "common" and out["rows"] == dict.fromkeys(ROLES, len(ids))
    data = pooled(ids)
    for party, x in data.items():
        for j, name in enumerate(DEMO_PARTIES[party][2]):
            got, col = out["columns"][f"{party}.{name}"], x[:, j]
            assert got["count"] == len(col) and got["missing_rate"] == 0.0
            assert got["mean"] == col.mean() and got["std"] == col.std()
            assert got["distinct"] == np.unique(col).size
            assert got["quantiles"]["0.5"] == np.quantile(col, 0.5, method="inverted_cdf")
            # the bureau's minimum is 2000 rows: the 5 % tails of ~25k rows hold fewer
            tails = party == "bureau"
            assert (got["quantiles"]["0.05"] is None) == tails
            assert (got["quantiles"]["0.95"] is None) == tails
            assert ("quantile 0.05" in got["withheld"]) == tails

    labels = out["correlation"]["columns"]
    order = [f"{p}.{c}" for p in sorted(ROLES) for c in DEMO_PARTIES[p][2]]
    assert sorted(labels) == sorted(order)
    everything = np.hstack([data[p] for p in sorted(ROLES)])
    expected = np.corrcoef(everything.T)
    at = [order.index(label) for label in labels]
    got = np.asarray(out["correlation"]["matrix"], dtype=np.float64)
    assert np.abs(got - expected[np.ix_(at, at)]).max() < 1e-6
    vifs = np.diag(np.linalg.inv(expected))[at]
    assert np.allclose([out["vif"][label] for label in labels], vifs, rtol=1e-4)

    # each silo's ledger: its statistics released to the coordinator, its messages to peers
    for party, node in credit.nodes.items():
        entries = node.ctx.ledger.entries(record.job_id)
        profile = [e for e in entries if e.kind == "job.released" and e.step == "stats.profile"]
        assert len(profile) == 1
        first = min(DEMO_PARTIES[party][2])  # the ledger keeps the start of the sorted JSON
        assert '{"columns": {' + json.dumps(first) in profile[0].reveals
    sent = {
        p: {
            e.kind
            for e in n.ctx.ledger.entries(record.job_id)
            if e.peer in ROLES and e.kind.startswith("stats.")
        }
        for p, n in credit.nodes.items()
    }
    # the lender (9 columns) encrypts for the bureau (8), both for the bank (6): the one with
    # more columns encrypts, the other multiplies and sends the products back
    assert sent["lender"] == {"stats.encrypted_columns"}
    assert sent["bureau"] == {"stats.encrypted_columns", "stats.cross_products"}
    assert sent["bank"] == {"stats.cross_products"}
    opened = [
        e
        for p in ("lender", "bureau")
        for e in credit.nodes[p].ctx.ledger.entries(record.job_id)
        if e.kind == "job.released" and e.step == "stats.open"
    ]
    assert len(opened) == 2 and all('"blocks"' in e.reveals for e in opened)


def test_a_silo_whose_policy_does_not_release_statistics_refuses(tmp_path: Path) -> None:
    c = consortium(tmp_path, {"bank": RELEASE, "bureau": RELEASE})  # lender: the default, off
    try:
        steps = [{"kind": "psi", "alignment": "common"}, {"kind": "stats"}]
        with pytest.raises(JobError, match="does not release statistics") as err:
            run_job(c.job(ROLES, steps), clients=c.clients(), store=c.store())
        assert isinstance(err.value.__cause__, PolicyError)
        for entry in c.nodes["lender"].ctx.ledger.entries():
            assert not entry.step.startswith("stats."), entry
    finally:
        c.stop_all()


def test_each_silo_profiles_its_own_dataset_without_cross_silo_products(
    credit: Consortium,
) -> None:
    steps = [{"kind": "stats", "population": "dataset", "quantiles": [0.5]}]
    record = run_job(credit.job(ROLES, steps), clients=credit.clients(), store=credit.store())
    out = record.result["1:stats"]
    assert out["population"] == "dataset"
    for party in ROLES:
        table = np.array(list(demo_table(party).values()))
        name = DEMO_PARTIES[party][2][0]
        got = out["columns"][f"{party}.{name}"]
        assert out["rows"][party] == len(table) and got["mean"] == table[:, 0].mean()
        own = [f"{party}.{c}" for c in DEMO_PARTIES[party][2]]
        at = [out["correlation"]["columns"].index(label) for label in own]
        block = np.asarray(out["correlation"]["matrix"], dtype=object)[np.ix_(at, at)]
        assert np.allclose(block.astype(float), np.corrcoef(table.T), atol=1e-12)
    matrix = out["correlation"]["matrix"]
    assert any(v is None for row in matrix for v in row)  # rows are not aligned across silos
    assert out["vif"] is None
    for node in credit.nodes.values():
        kinds = {e.kind for e in node.ctx.ledger.entries(record.job_id)}
        assert not {"stats.encrypted_columns", "stats.cross_products"} & kinds
