"""Whole (horizontal) models over real gRPC: evaluation at a member, and scoring at one member.

Three members (default_credit_homo guest / host_1 / host_2), the guest also holding
default_credit_homo_test as dataset ``test``. Horizontal LR is evaluated at the guest through the
shared ``report_and_release`` path; hxgb (few trees) and hlr models then score a member's own
dataset with ``fedsilo score`` alone: no PSI, no other silo, resumable and idempotent like
vertical scoring.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xgboost as xgb
from bundled_data import data_file, load_csv
from sqlalchemy import create_engine, text
from support import Consortium, SiloSpec

from fedsilo.cli.score_cmd import whole_score_spec
from fedsilo.coordinator.config import parse_job_spec
from fedsilo.coordinator.orchestrator import run_job
from fedsilo.errors import JobError, ProtocolError
from fedsilo.ml.metrics import auc
from fedsilo.protocols.hlr.horizontal import HorizontalLRModel
from fedsilo.protocols.hxgb.silo import export_path
from fedsilo.silo_node import methods as silo_methods
from fedsilo.silo_node.ledger import CONTROL_KINDS

pytestmark = pytest.mark.e2e

FEATURES = [f"x{i}" for i in range(23)]
MEMBERS = ("guest", "host_1", "host_2")
EVALUATE_ON = {"party": "guest", "dataset": "test"}


def _csv(name: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(ids as the silo normalises them, features, labels) of a default_credit_homo file."""
    a = load_csv(f"default_credit_homo_{name}")
    return [str(int(i)) for i in a[:, 0]], a[:, 2:], a[:, 1]


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Consortium]:
    c = Consortium(tmp_path_factory.mktemp("horizontal-scoring"))
    c.add_silo(
        SiloSpec(
            "guest",
            data_file("default_credit_homo_guest"),
            FEATURES,
            label="y",
            extra={"test": data_file("default_credit_homo_test")},
        )
    )
    for party in MEMBERS[1:]:
        c.add_silo(SiloSpec(party, data_file(f"default_credit_homo_{party}"), FEATURES, label="y"))
    c.start_all()
    c.coordinator_config()  # writes coordinator.toml for the CLI
    yield c
    c.stop_all()


def _train(c: Consortium, step: dict[str, Any], name: str) -> dict[str, Any]:
    spec = c.job({p: "member" for p in MEMBERS}, [step], name=name)
    record = run_job(spec, clients=c.clients(), store=c.store())
    assert record.state == "succeeded"
    out = record.result[f"1:{step['kind']}"]
    assert isinstance(out, dict)
    return {**out, "job_id": record.job_id}


@pytest.fixture(scope="module")
def hlr(consortium: Consortium) -> dict[str, Any]:
    return _train(
        consortium, {"kind": "hlr", "l2": 1 / 24000, "evaluate_on": EVALUATE_ON}, name="hlr-eval"
    )


@pytest.fixture(scope="module")
def hxgb(consortium: Consortium) -> dict[str, Any]:
    return _train(
        consortium,
        {"kind": "hxgb", "n_estimators": 3, "max_depth": 2, "max_bin": 16},
        name="hxgb-score",
    )


def _score_cli(c: Consortium, model: str, *extra: str) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "fedsilo.cli.main",
            "score",
            "--model",
            model,
            "--config",
            str(c.root / "coordinator.toml"),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "succeeded" in out.stdout, out.stdout
    result = json.loads(out.stdout.split("; ", 1)[1])
    assert isinstance(result, dict)
    return result


def _scores(c: Consortium, party: str, table: str, version: str) -> dict[str, float]:
    engine = create_engine(f"sqlite:///{c.root / (party + '.db')}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(f"SELECT id, score FROM {table} WHERE model_version = :v"), {"v": version}
            ).all()
    finally:
        engine.dispose()
    scores = {str(r[0]): float(r[1]) for r in rows}
    assert len(scores) == len(rows)  # one row per id
    return scores


def test_hlr_evaluation_at_a_member_is_reported_and_registered(consortium, hlr) -> None:
    metrics = hlr["metrics"]
    payload = consortium.nodes["guest"].ctx.store.load_model_part(f"{hlr['job_id']}-hlr").payload
    model = HorizontalLRModel.from_dict(payload["model"])
    _ids, x_test, y_test = _csv("test")
    assert metrics["auc"] == pytest.approx(auc(y_test, model.predict_proba(x_test)), abs=1e-12)
    assert metrics["rows"] == len(y_test) and 0.5 < metrics["member_only_auc"] < 1
    registered = consortium.store().get_model(hlr["model"]).record["metrics"]
    assert registered["auc"] == metrics["auc"] and registered["evaluated_on"] == EVALUATE_ON
    report = Path(hlr["report"])
    assert report.is_file() and report.parent == consortium.root / "reports"
    assert report.with_suffix(".json").is_file() and "data:image/png" in report.read_text()


def test_hlr_evaluation_the_policy_forbids_is_refused_before_training(consortium) -> None:
    spec = consortium.job(
        {p: "member" for p in MEMBERS},
        [{"kind": "hlr", "evaluate_on": {"party": "host_1", "dataset": "test"}}],
        name="hlr-nope",
    )
    with pytest.raises(JobError, match="policy does not allow dataset 'test'"):
        run_job(spec, clients=consortium.clients(), store=consortium.store())
    job = next(j for j in consortium.store().list_jobs() if j.name == "hlr-nope")
    # host_1 sent nothing: its ledger holds only what it accepted, refused and closed
    entries = consortium.nodes["host_1"].ctx.ledger.entries(job.job_id)
    assert {e.kind for e in entries} <= CONTROL_KINDS
    assert any(e.kind == "job.refused" and "dataset 'test'" in e.reveals for e in entries)


def test_hxgb_scores_at_one_member_alone_match_the_xgboost_export(consortium, hxgb) -> None:
    first = _score_cli(consortium, hxgb["model"], "--dataset", "host_1=main", "--table", "hx")
    ids, x, _y = _csv("host_1")
    assert first["written"] == first["rows"] == len(ids)
    again = _score_cli(consortium, hxgb["model"], "--dataset", "host_1=main", "--table", "hx")
    assert again["written"] == 0 and again["already_scored"] == len(ids)
    scores = _scores(consortium, "host_1", "hx", hxgb["model"])
    assert set(scores) == set(ids)
    booster = xgb.Booster()
    booster.load_model(str(export_path(consortium.nodes["host_1"].ctx, f"{hxgb['job_id']}-hxgb")))
    expected = booster.predict(xgb.DMatrix(x, feature_names=FEATURES))
    ours = np.array([scores[i] for i in ids])
    np.testing.assert_allclose(ours, expected, atol=1e-5)
    for party in ("guest", "host_2"):  # no other silo took part, nothing was written there
        assert not _has_table(consortium, party, "hx")


def test_hlr_scores_at_its_first_member_match_sklearn(consortium, hlr) -> None:
    first = _score_cli(consortium, hlr["model"], "--table", "hl")  # default: guest, on 'main'
    ids, x, _y = _csv("guest")
    assert first["written"] == len(ids)
    assert _score_cli(consortium, hlr["model"], "--table", "hl")["written"] == 0
    scores = _scores(consortium, "guest", "hl", hlr["model"])
    assert set(scores) == set(ids)
    payload = consortium.nodes["guest"].ctx.store.load_model_part(f"{hlr['job_id']}-hlr").payload
    expected = HorizontalLRModel.from_dict(payload["model"]).to_sklearn().predict_proba(x)[:, 1]
    np.testing.assert_allclose(np.array([scores[i] for i in ids]), expected, atol=1e-9)


def test_whole_model_scoring_needs_a_single_member(consortium, hlr) -> None:
    spec = consortium.job(
        {"guest": "member", "host_1": "member"},
        [{"kind": "score", "model": hlr["model"]}],
        name="two-scorers",
    )
    with pytest.raises(JobError, match="exactly one party"):
        run_job(spec, clients=consortium.clients(), store=consortium.store())


def test_whole_model_scoring_resumes_after_a_failure(consortium, hlr) -> None:
    """A chunk fails midway; resuming the same job keeps its local alignment, writes only the
    missing rows, and the table ends with one row per id, the same as an uninterrupted run."""
    raw = whole_score_spec(
        hlr["model"],
        party="host_2",
        dataset="main",
        alignment=None,
        table="resumed",
        chunk_rows=1000,
    )
    spec = parse_job_spec(raw, consortium.root / "score.toml")
    original = silo_methods._METHODS["score.chunk"]
    calls = {"n": 0}

    def failing(ctx: Any, session: Any, req: Any) -> Any:
        calls["n"] += 1
        if calls["n"] > 3:
            raise ProtocolError("injected failure")
        return original.fn(ctx, session, req)

    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(silo_methods._METHODS, "score.chunk", replace(original, fn=failing))
        with pytest.raises(JobError, match="injected failure"):
            run_job(spec, clients=consortium.clients(), store=consortium.store())
    failed = next(
        j for j in consortium.store().list_jobs() if j.name == raw["name"] and j.state == "failed"
    )
    assert len(_scores(consortium, "host_2", "resumed", hlr["model"])) == 3000
    record = run_job(
        spec,
        clients=consortium.clients(),
        store=consortium.store(),
        job_id=failed.job_id,
        resume=True,
    )
    out = record.result["1:score"]
    ids, _x, _y = _csv("host_2")
    assert out["already_scored"] == 3000 and out["written"] == len(ids) - 3000
    assert set(_scores(consortium, "host_2", "resumed", hlr["model"])) == set(ids)
    alignment = consortium.nodes["host_2"].ctx.store.alignment_info(f"{failed.job_id}-local")
    assert alignment.rows == len(ids) and alignment.job_id == failed.job_id


def _has_table(c: Consortium, party: str, table: str) -> bool:
    engine = create_engine(f"sqlite:///{c.root / (party + '.db')}")
    try:
        with engine.connect() as conn:
            found = conn.execute(
                text("SELECT name FROM sqlite_master WHERE name = :t"), {"t": table}
            ).first()
    finally:
        engine.dispose()
    return found is not None
