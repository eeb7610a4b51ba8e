"""select over real gRPC: by a SecureBoost model's importance, feeding the next training step."""

from __future__ import annotations

from pathlib import Path

import pytest
from bundled_data import data_file
from support import Consortium, SiloSpec

from fedsilo.coordinator.orchestrator import run_job
from fedsilo.protocols.select.criteria import importance_of_part

pytestmark = pytest.mark.e2e

COLUMNS = [f"x{i}" for i in range(10)]


def test_select_by_secureboost_importance_feeds_lr(tmp_path: Path) -> None:
    c = Consortium(tmp_path)
    c.add_silo(SiloSpec("bank", data_file("breast_hetero_guest"), COLUMNS, label="y"))
    c.add_silo(SiloSpec("bureau", data_file("breast_hetero_host"), COLUMNS))
    c.start_all()
    try:
        steps = [
            {"kind": "psi", "alignment": "b"},
            {"kind": "secureboost", "n_estimators": 3, "max_depth": 2, "max_bin": 16},
            {"kind": "select", "importance": "secureboost", "top_k": 3},
            {"kind": "lr", "batch_size": 128, "max_iter": 2},
        ]
        roles = {"bank": "active", "bureau": "passive"}
        record = run_job(c.job(roles, steps), clients=c.clients(), store=c.store())
        assert record.state == "succeeded"
        job = record.job_id
        for party in ("bank", "bureau"):
            store = c.nodes[party].ctx.store
            imp = importance_of_part(
                "secureboost", store.load_model_part(f"{job}-secureboost").payload
            )
            chosen = store.load_checkpoint(job, "select/2")["columns"]
            used = sorted(c for c, v in imp.items() if v > 0)
            # the silo kept its own columns the trees split on (at most 3, at least 1)
            assert 1 <= len(chosen) <= 3 and set(chosen) <= set(used or chosen)
            assert len(chosen) == min(3, max(1, len(used)))
            assert store.load_model_part(f"{job}-lr").payload["columns"] == chosen
            assert record.result["3:select"]["kept"][party] == {"kept": len(chosen), "of": 10}
    finally:
        c.stop_all()
