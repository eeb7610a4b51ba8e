"""The woe and select steps over real gRPC on loopback (breast data, 2048-bit keys): refusals by
policy, what each silo stores and ledgers, selection feeding the next training step."""

from __future__ import annotations

from pathlib import Path

import pytest
from bundled_data import data_file
from sqlalchemy import create_engine, text
from support import Consortium, SiloSpec

from fedsilo.coordinator.orchestrator import run_job
from fedsilo.errors import JobError

pytestmark = pytest.mark.e2e

GUEST = [f"x{i}" for i in range(10)]
HOST = [f"x{i}" for i in range(10)]
ROLES = {"bank": "active", "bureau": "passive"}


def _consortium(root: Path, *, active: str, passive: str) -> Consortium:
    c = Consortium(root)
    c.add_silo(SiloSpec("bank", data_file("breast_hetero_guest"), GUEST, label="y", policy=active))
    c.add_silo(SiloSpec("bureau", data_file("breast_hetero_host"), HOST, policy=passive))
    c.start_all()
    return c


def test_woe_refused_without_the_passive_counts_switch(tmp_path: Path) -> None:
    c = _consortium(tmp_path, active="release_woe_iv = true\n", passive="")
    try:
        spec = c.job(ROLES, [{"kind": "psi", "alignment": "b"}, {"kind": "woe"}])
        with pytest.raises(JobError, match="release_woe_counts"):
            run_job(spec, clients=c.clients(), store=c.store())
        # nothing of the passive's characteristics left it
        kinds = {e.kind for e in c.nodes["bureau"].ctx.ledger.entries()}
        assert "woe.counts" not in kinds
    finally:
        c.stop_all()


def test_woe_then_select_by_iv_feeds_lr(tmp_path: Path) -> None:
    c = _consortium(
        tmp_path,
        active="release_woe_iv = true\nmin_rows_per_statistic = 40\n",
        passive="release_woe_counts = true\nmin_rows_per_statistic = 40\n",
    )
    try:
        steps = [
            {"kind": "psi", "alignment": "b"},
            {"kind": "woe", "max_bins": 6},
            {"kind": "select", "min_iv": 0.5, "top_k": 3},
            {"kind": "lr", "batch_size": 128, "max_iter": 2},
        ]
        record = run_job(c.job(ROLES, steps), clients=c.clients(), store=c.store())
        assert record.state == "succeeded"
        woe = record.result["2:woe"]
        assert woe["characteristics"] == {"bank": 10, "bureau": 10}
        assert woe["released_to_owner"] == {"bureau": {"iv": True, "woe": False}}
        kept = record.result["3:select"]["kept"]
        assert kept["bank"]["of"] == 10 and 1 <= kept["bank"]["kept"] <= 3
        job = record.job_id
        for party in ("bank", "bureau"):
            ctx = c.nodes[party].ctx
            chosen = ctx.store.load_checkpoint(job, "select/2")["columns"]
            assert len(chosen) == kept[party]["kept"]
            # the lr step trained on exactly the selected columns at each silo
            assert ctx.store.load_model_part(f"{job}-lr").payload["columns"] == chosen
            state = ctx.store.load_checkpoint(job, "woe/1")
            assert state["iv"] is not None
            # the passive holds IVs but no WOE table: the label holder's switch is off
            assert (state["woe"] is None) == (party == "bureau")
        ledger = {e.kind for e in c.nodes["bureau"].ctx.ledger.entries(job)}
        assert "woe.counts" in ledger and "woe.result" not in ledger
        assert "woe.result" in {e.kind for e in c.nodes["bank"].ctx.ledger.entries(job)}
    finally:
        c.stop_all()


def test_scorecard_refused_where_the_owner_holds_no_woe(tmp_path: Path) -> None:
    c = _consortium(tmp_path, active="", passive="release_woe_counts = true\n")
    try:
        steps = [
            {"kind": "psi", "alignment": "b"},
            {"kind": "woe", "max_bins": 6},
            {"kind": "lr", "transform": "woe", "batch_size": 128, "max_iter": 1},
        ]
        with pytest.raises(JobError, match="release_woe_table"):
            run_job(c.job(ROLES, steps), clients=c.clients(), store=c.store())
    finally:
        c.stop_all()


def test_select_by_iv_refused_where_the_owner_holds_no_iv(tmp_path: Path) -> None:
    c = _consortium(tmp_path, active="", passive="release_woe_counts = true\n")
    try:
        steps = [
            {"kind": "psi", "alignment": "b"},
            {"kind": "woe", "max_bins": 6},
            {"kind": "select", "min_iv": 0.1},
        ]
        with pytest.raises(JobError, match="release_woe_iv"):
            run_job(c.job(ROLES, steps), clients=c.clients(), store=c.store())
    finally:
        c.stop_all()


def test_scorecard_points_per_party_where_the_passive_allows(tmp_path: Path) -> None:
    c = _consortium(
        tmp_path,
        active="release_woe_table = true\n",
        passive="release_woe_counts = true\nrelease_points_per_party = true\n",
    )
    try:
        steps = [
            {"kind": "psi", "alignment": "b"},
            {"kind": "woe", "max_bins": 6},
            {"kind": "lr", "transform": "woe", "batch_size": 128, "max_iter": 2},
            {"kind": "score", "table": "card"},
        ]
        record = run_job(c.job(ROLES, steps), clients=c.clients(), store=c.store())
        assert record.state == "succeeded"
        engine = create_engine(c.nodes["bank"].ctx.config.database_url)
        with engine.connect() as conn:
            read = {
                t: dict(conn.execute(text(f"select id, score from {t}")).all())
                for t in ("card_points", "card_points_bank", "card_points_bureau")
            }
        engine.dispose()
        total, bank, bureau = (
            read["card_points"],
            read["card_points_bank"],
            read["card_points_bureau"],
        )
        assert len(total) == 569 and total.keys() == bank.keys() == bureau.keys()
        for i in list(total)[:50]:
            assert bank[i] + bureau[i] == pytest.approx(total[i], abs=1e-6)
        ledger = [e for e in c.nodes["bureau"].ctx.ledger.entries(record.job_id)]
        assert any(
            "release_points_per_party" in e.reveals for e in ledger if e.kind == "predict.part"
        )
    finally:
        c.stop_all()
