"""The spine end to end over real gRPC on loopback: two silos (SQLite and PostgreSQL), the
coordinator reaching both (health, describe), a no-op job and a job that fails cleanly."""

from __future__ import annotations

from pathlib import Path

import pytest
from bundled_data import data_file
from support import Consortium, SiloSpec

from fedsilo.coordinator.orchestrator import run_job
from fedsilo.errors import JobError, PolicyError

pytestmark = pytest.mark.e2e

GUEST = [f"x{i}" for i in range(10)]
HOST = [f"x{i}" for i in range(20)]


@pytest.fixture
def consortium(tmp_path: Path, pg_url: str):
    c = Consortium(tmp_path)
    c.add_silo(SiloSpec("bank", data_file("breast_hetero_guest"), GUEST, label="y"))
    c.add_silo(SiloSpec("bureau", data_file("breast_hetero_host"), HOST, db_url=pg_url))
    c.start_all()
    yield c
    c.stop_all()


def test_coordinator_reaches_both_silos(consortium: Consortium) -> None:
    clients = consortium.clients()
    for party, client in clients.items():
        assert client.health() == "SERVING"
        info = client.describe()
        assert info.party == party and info.api_version == "fedsilo.v1"
        (ds,) = info.datasets
        assert ds.name == "main" and ds.rows == 569
    assert clients["bank"].describe().datasets[0].label == "y"
    # feature names stay private unless the policy releases them
    assert list(clients["bureau"].describe().datasets[0].features) == [
        f"feature_{i}" for i in range(20)
    ]


def test_noop_job_runs_through_the_coordinator(consortium: Consortium) -> None:
    store = consortium.store()
    spec = consortium.job({"bank": "active", "bureau": "passive"}, [{"kind": "noop"}])
    record = run_job(spec, clients=consortium.clients(), store=store)
    assert record.state == "succeeded"
    assert record.result["1:noop"]["rows"] == {"bank": 569, "bureau": 569}
    # every silo recorded what it released to the coordinator, in a chain that verifies
    for node in consortium.nodes.values():
        entries = node.ctx.ledger.entries(record.job_id)
        assert entries and entries[0].peer == "coordinator"
        assert node.ctx.ledger.verify() == (True, None)


def test_job_refused_by_policy_fails_with_reason(consortium: Consortium, tmp_path: Path) -> None:
    store = consortium.store()
    spec = consortium.job({"bank": "active", "bureau": "passive"}, [{"kind": "noop"}])
    spec.parties["bureau"]["columns"] = ["not_a_column"]
    with pytest.raises(JobError, match="not_a_column"):
        run_job(spec, clients=consortium.clients(), store=store)
    (job,) = store.list_jobs()
    assert job.state == "failed" and "not_a_column" in job.reason


def test_silo_down_fails_the_job_quickly(consortium: Consortium) -> None:
    store = consortium.store()
    clients = consortium.clients()
    consortium.stop("bureau")
    spec = consortium.job({"bank": "active", "bureau": "passive"}, [{"kind": "noop"}])
    with pytest.raises(JobError, match="bureau"):
        run_job(spec, clients=clients, store=store)
    assert store.list_jobs()[0].state == "failed"


def test_policy_error_type_survives_the_wire(consortium: Consortium) -> None:
    client = consortium.clients()["bank"]
    with pytest.raises(PolicyError, match="does not name party"):
        client.open_job(
            "j1",
            {"parties": {"someone": {"role": "active", "dataset": "main"}}, "steps": []},
            resume=False,
        )
