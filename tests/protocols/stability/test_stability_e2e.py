"""The ``stability`` step end to end over real gRPC under mTLS, three silos on the bundled credit
demo data: the population stability index of every characteristic (at its owner) and of the
score (at the label holder, from its score table) between the training and test parts of the
aligned population equals the same computation on the pooled data; per-bin shares are withheld
where a bin is below the owner's minimum; each silo's ledger and report show what it released."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from credit_demo import ROLES, consortium, demo_table, pooled, write_demo_subset
from support import Consortium

from fedsilo.coordinator.config import parse_job_spec
from fedsilo.coordinator.orchestrator import run_job
from fedsilo.errors import JobError, PolicyError
from fedsilo.protocols.stability.index import stability
from fedsilo.silo_node.demo_data import DEMO_PARTIES

pytestmark = pytest.mark.e2e

RELEASE = "release_stability = true\nrelease_feature_names = true\n"


def fake_score(customer: str, pay_0: float) -> float:
    """A deterministic score per customer, as an earlier scoring job would have written it."""
    return (pay_0 + 2.0) / 12.0 + (int(customer[1:]) % 97) / 1000.0


#: the batch table each silo holds besides its training data: every third row, the bureau's
#: customers ten years older
SHIFT = {"bureau": {"AGE": 10.0}}


@pytest.fixture(scope="module")
def credit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Consortium]:
    root = tmp_path_factory.mktemp("stability")
    batches = {
        p: {"batch": write_demo_subset(root / f"batch_{p}.csv.gz", p, 3, SHIFT.get(p, {}))}
        for p in ROLES
    }
    c = consortium(root, dict.fromkeys(ROLES, RELEASE), batches)
    steps = [{"kind": "psi", "alignment": "common"}, {"kind": "split", "test_fraction": 0.3}]
    run_job(c.job(ROLES, steps, name="prep"), clients=c.clients(), store=c.store())
    yield c
    c.stop_all()


def _ids(c: Consortium, name: str) -> list[str]:
    store = c.nodes["bank"].ctx.store
    return [i for chunk in store.iter_alignment_ids(name) for i in chunk]


def test_stability_matches_the_pooled_data(credit: Consortium) -> None:
    c = credit
    train_ids, test_ids = _ids(c, "common-train"), _ids(c, "common-test")
    train, test = pooled(train_ids), pooled(test_ids)
    pay = DEMO_PARTIES["bank"][2].index("PAY_0")
    stamp = datetime.now(UTC)
    rows = [
        (i, fake_score(i, x[pay]), "m1", stamp)
        for ids, data in ((train_ids, train), (test_ids, test))
        for i, x in zip(ids, data["bank"], strict=True)
    ]
    c.nodes["bank"].ctx.store.write_scores("scores", rows)
    step = {
        "kind": "stability",
        "train_alignment": "common-train",
        "alignment": "common-test",
        "score_table": "scores",
        "score_version": "m1",
    }
    record = run_job(c.job(ROLES, [step]), clients=c.clients(), store=c.store())
    out = record.result["1:stability"]
    for party in ROLES:
        for j, name in enumerate(DEMO_PARTIES[party][2]):
            got = out["characteristics"][f"{party}.{name}"]
            want = stability(train[party][:, j], test[party][:, j], 10)
            assert got["index"] == want.index, name
            assert got["expected_rows"] == len(train_ids) and got["actual_rows"] == len(test_ids)
            counts = np.concatenate([want.expected, want.actual])
            small = bool(np.any((counts > 0) & (counts < 10)))
            assert (got["bins"] is None) == small, name
    scores_train = np.array([r[1] for r in rows[: len(train_ids)]])
    scores_test = np.array([r[1] for r in rows[len(train_ids) :]])
    assert out["score"]["index"] == stability(scores_train, scores_test, 10).index
    assert out["score"]["party"] == "bank"
    assert set(out["warnings"]) <= set(out["characteristics"]) | {"score"}

    for party, node in c.nodes.items():
        released = [
            e
            for e in node.ctx.ledger.entries(record.job_id)
            if e.kind == "job.released" and e.step == "stability.index"
        ]
        assert len(released) == 1
        assert not [e for e in node.ctx.ledger.entries(record.job_id) if e.peer in ROLES]
        report = (
            Path(node.ctx.config.path).parent
            / "reports"
            / f"{record.job_id}-stability-{party}.json"
        )
        doc = json.loads(report.read_text())
        names = [r["name"] for r in doc["characteristics"]]
        assert names[: len(DEMO_PARTIES[party][2])] == list(DEMO_PARTIES[party][2])
        html = report.with_suffix(".html").read_text()
        assert 'id="table-stability"' in html and "population stability index" in html
        if party == "bank":
            assert names[-1] == "score (m1)" and len(names) == len(DEMO_PARTIES[party][2]) + 1


def test_a_new_batch_table_against_the_training_rows_flags_the_shift(credit: Consortium) -> None:
    """The batch is each silo's whole ``batch`` dataset (a new table, not aligned); the training
    rows are read over the dataset the training alignment was made from."""
    raw = {
        "name": "monthly",
        "parties": {p: {"dataset": "batch", "role": r} for p, r in ROLES.items()},
        "steps": [{"kind": "stability", "train_alignment": "common-train", "batch": "dataset"}],
    }
    spec = parse_job_spec(raw, credit.root / "monthly.toml")
    out = run_job(spec, clients=credit.clients(), store=credit.store()).result["1:stability"]
    assert out["batch"] == "dataset" and out["score"] is None
    train = pooled(_ids(credit, "common-train"))
    for party in ROLES:
        shift = SHIFT.get(party, {})
        table = np.array(list(demo_table(party).values()))[::3]
        for j, name in enumerate(DEMO_PARTIES[party][2]):
            batch = table[:, j] + shift.get(name, 0.0)
            want = stability(train[party][:, j], batch, 10)
            got = out["characteristics"][f"{party}.{name}"]
            assert got["index"] == want.index and got["actual_rows"] == len(batch), name
    assert out["warnings"].get("bureau.AGE") == "shift"
    assert out["characteristics"]["bureau.AGE"]["index"] > 0.25


def test_a_silo_whose_policy_does_not_release_stability_refuses(tmp_path: Path) -> None:
    c = consortium(tmp_path, {"bank": RELEASE, "bureau": RELEASE})  # lender: the default, off
    try:
        steps = [
            {"kind": "psi", "alignment": "common"},
            {"kind": "stability", "train_alignment": "common"},
        ]
        with pytest.raises(JobError, match="does not release stability") as err:
            run_job(c.job(ROLES, steps), clients=c.clients(), store=c.store())
        assert isinstance(err.value.__cause__, PolicyError)
        for entry in c.nodes["lender"].ctx.ledger.entries():
            assert entry.step != "stability.index" or entry.kind != "job.released", entry
    finally:
        c.stop_all()
