"""The notebook API drives a real consortium over gRPC."""

from __future__ import annotations

from pathlib import Path

import pytest
from bundled_data import data_file
from support import Consortium, SiloSpec

from fedsilo.api import Consortium as Api

pytestmark = pytest.mark.e2e


def test_notebook_api_runs_a_job_and_lists_it(tmp_path: Path) -> None:
    c = Consortium(tmp_path)
    c.add_silo(
        SiloSpec("bank", data_file("breast_hetero_guest"), [f"x{i}" for i in range(10)], label="y")
    )
    c.add_silo(SiloSpec("bureau", data_file("breast_hetero_host"), [f"x{i}" for i in range(20)]))
    c.start_all()
    try:
        api = Api(c.coordinator_config())
        described = api.describe()
        assert described["bank"]["health"] == "SERVING"
        assert described["bank"]["datasets"]["main"]["rows"] == 569
        parties = {
            "bank": {"dataset": "main", "role": "active"},
            "bureau": {"dataset": "main", "role": "passive"},
        }
        record = api.run(
            {"name": "nb", "parties": parties, "steps": [{"kind": "psi", "alignment": "nb"}]}
        )
        assert record.state == "succeeded"
        assert [j.job_id for j in api.jobs()] == [record.job_id]
        assert api.job(record.job_id).result["1:psi"]["count"] == 569
        assert api.cancel(record.job_id) is False  # it has ended: nothing to cancel
    finally:
        c.stop_all()
