"""The ``count`` protocol end to end over real gRPC under mTLS: every party releases the size of
the alignment the accepted step names, under its own minimum; a silo whose policy does not list
``count`` refuses the job, and a count below a silo's minimum is refused, not released."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from bundled_data import data_file
from support import Consortium, SiloSpec

from fedsilo.coordinator.orchestrator import run_job
from fedsilo.errors import JobError, PolicyError

pytestmark = pytest.mark.e2e

FEATURES = [f"x{i}" for i in range(10)]
PARTIES = {"bank": "active", "bureau": "passive"}


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Consortium]:
    c = Consortium(tmp_path, tls=True)
    c.add_silo(SiloSpec("bank", data_file("breast_hetero_guest"), FEATURES, label="y"))
    c.add_silo(
        SiloSpec(
            "bureau", data_file("breast_hetero_host"), FEATURES, policy="min_intersection = 400\n"
        )
    )
    c.start_all()
    yield c
    c.stop_all()


def test_count_releases_the_intersection_size_everyone_agrees_on(pair: Consortium) -> None:
    spec = pair.job(PARTIES, [{"kind": "psi", "alignment": "b"}, {"kind": "count"}])
    record = run_job(spec, clients=pair.clients(), store=pair.store())
    psi, count = record.result["1:psi"], record.result["2:count"]
    assert count == {"alignment": "b", "rows": psi["count"]}
    assert count["rows"] == pair.nodes["bank"].ctx.store.alignment_info("b").rows
    released = [
        e
        for e in pair.nodes["bureau"].ctx.ledger.entries(record.job_id)
        if e.kind == "job.released" and e.step == "count.release"
    ]
    assert len(released) == 1 and f'"rows": {psi["count"]}' in released[0].reveals


def test_a_count_below_a_silos_minimum_is_refused(pair: Consortium) -> None:
    """The split's test part (~20 % of 569 rows) is below the bureau's minimum of 400."""
    spec = pair.job(
        PARTIES,
        [
            {"kind": "psi", "alignment": "b"},
            {"kind": "split", "test_fraction": 0.2},
            {"kind": "count", "alignment": "b-test"},
        ],
    )
    with pytest.raises(JobError, match="below this silo's minimum of 400") as err:
        run_job(spec, clients=pair.clients(), store=pair.store())
    assert isinstance(err.value.__cause__, PolicyError)


def test_count_is_off_unless_the_policy_lists_it(tmp_path: Path) -> None:
    c = Consortium(tmp_path)
    c.add_silo(SiloSpec("bank", data_file("breast_hetero_guest"), FEATURES, label="y"))
    c.add_silo(SiloSpec("bureau", data_file("breast_hetero_host"), FEATURES))
    text = c.configs["bureau"].read_text()
    c.configs["bureau"].write_text(text.replace('"count", ', "").replace(', "count"', ""))
    c.start_all()
    try:
        spec = c.job(PARTIES, [{"kind": "psi", "alignment": "b"}, {"kind": "count"}])
        with pytest.raises(JobError, match="does not allow protocol 'count'"):
            run_job(spec, clients=c.clients(), store=c.store())
    finally:
        c.stop_all()
