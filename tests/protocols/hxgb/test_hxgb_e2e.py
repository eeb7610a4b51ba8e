"""Horizontal XGBoost end to end over real gRPC on loopback.

Three member silos (default_credit_homo guest / host_1 / host_2, 8,000 rows each), the guest also
holding default_credit_homo_test as a second dataset; the coordinator sums CKKS ciphertexts it
cannot read. The reference run uses the issue's setting (30 trees of depth 3, max_bin 32).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xgboost as xgb
from bundled_data import data_file, load_csv
from sklearn.metrics import roc_auc_score
from support import Consortium, SiloSpec

from fedsilo.coordinator.orchestrator import run_job
from fedsilo.coordinator.store import JobRecord
from fedsilo.crypto import ckks
from fedsilo.errors import JobError, NotFound, PolicyError
from fedsilo.protocols.hxgb.training import HxgbParams, HxgbSilo, train_in_process
from fedsilo.silo_node.ledger import CONTROL_KINDS
from fedsilo.silo_node.predict import get_predictor
from fedsilo.wire import StepPayload

pytestmark = pytest.mark.e2e

FEATURES = [f"x{i}" for i in range(23)]
MEMBERS = ("guest", "host_1", "host_2")
#: the issue's reference setting
REFERENCE = {
    "n_estimators": 30,
    "max_depth": 3,
    "learning_rate": 0.3,
    "max_bin": 32,
    "reg_lambda": 1.0,
}
EVALUATE_ON = {"party": "guest", "dataset": "test"}


def _csv(name: str) -> tuple[np.ndarray, np.ndarray]:
    a = load_csv(f"default_credit_homo_{name}")
    return a[:, 2:], a[:, 1]


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Consortium]:
    c = Consortium(tmp_path_factory.mktemp("hxgb"))
    test_csv = data_file("default_credit_homo_test")
    c.add_silo(
        SiloSpec(
            "guest",
            data_file("default_credit_homo_guest"),
            FEATURES,
            label="y",
            extra={"test": test_csv},
        )
    )
    for party in MEMBERS[1:]:
        c.add_silo(SiloSpec(party, data_file(f"default_credit_homo_{party}"), FEATURES, label="y"))
    c.start_all()
    yield c
    c.stop_all()


def _run(
    c: Consortium, step: dict[str, Any], members: tuple[str, ...] = MEMBERS, name: str = "credit"
) -> JobRecord:
    spec = c.job({p: "member" for p in members}, [{"kind": "hxgb", **step}], name=name)
    return run_job(spec, clients=c.clients(), store=c.store())


@dataclass
class Spy:
    """What the silos computed in this process: secret contexts, decrypted sums, log lines."""

    secrets: list[bytes] = field(default_factory=list)
    sums: list[np.ndarray] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)

    def wrap(self, fn: Callable[..., Any], into: list[Any]) -> Callable[..., Any]:
        def spied(*args: Any, **kwargs: Any) -> Any:
            out = fn(*args, **kwargs)
            into.append(out)
            return out

        return spied


class _ListHandler(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record.getMessage())


@pytest.fixture(scope="module")
def reference(consortium: Consortium) -> tuple[JobRecord, Spy]:
    spy = Spy()
    root = logging.getLogger()
    handler, level = _ListHandler(spy.logs), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(
                ckks, "secret_context_bytes", spy.wrap(ckks.secret_context_bytes, spy.secrets)
            )
            mp.setattr(ckks, "round_exact", spy.wrap(ckks.round_exact, spy.sums))
            record = _run(consortium, {**REFERENCE, "evaluate_on": EVALUATE_ON})
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    return record, spy


def _pooled_xgboost_auc() -> float:
    parts = [_csv(p) for p in MEMBERS]
    x, y = np.vstack([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    params = {
        "objective": "binary:logistic",
        "tree_method": "hist",
        "max_depth": 3,
        "eta": 0.3,
        "max_bin": 32,
        "reg_lambda": 1.0,
        "nthread": 1,
        "seed": 0,
    }
    bst = xgb.train(params, xgb.DMatrix(x, label=y), 30)
    x_test, y_test = _csv("test")
    return float(roc_auc_score(y_test, bst.predict(xgb.DMatrix(x_test))))


def _part(c: Consortium, party: str, record: JobRecord) -> dict[str, Any]:
    payload = c.nodes[party].ctx.store.load_model_part(f"{record.job_id}-hxgb").payload
    assert isinstance(payload, dict)
    return payload


@pytest.mark.slow
def test_reference_setting_matches_pooled_xgboost(consortium, reference) -> None:
    record, _ = reference
    out = record.result["1:hxgb"]
    assert record.state == "succeeded" and out["trees"] == 30 and out["rounds"] == 1 + 30 * 3
    ours, theirs = out["metrics"]["auc"], _pooled_xgboost_auc()
    assert abs(ours - theirs) <= 0.005, (ours, theirs)
    # the guest alone does worse: federating is worth something to it
    assert out["metrics"]["member_only_auc"] < ours
    registered = consortium.store().get_model(out["model"])
    assert registered.kind == "hxgb"
    assert registered.record["metrics"]["auc"] == ours
    assert registered.record["metrics"]["evaluated_on"] == EVALUATE_ON
    assert Path(out["report"]).is_file()


def test_service_model_is_the_in_process_model(consortium, reference) -> None:
    """Over gRPC, with rows in each silo's id order, the model is bit for bit the in-process one."""
    record, _ = reference
    silos = [
        HxgbSilo(
            *_csv(p), params=HxgbParams(**REFERENCE), party=p, n_silos=3, feature_names=FEATURES
        )
        for p in MEMBERS
    ]
    model, _stats = train_in_process(silos)
    parts = [_part(consortium, p, record) for p in MEMBERS]
    assert all(part == parts[0] for part in parts[1:])
    assert parts[0]["model"] == json.loads(json.dumps(model.to_dict()))
    assert parts[0]["columns"] == FEATURES


def test_export_loads_in_xgboost_and_predicts_like_fedsilo(consortium, reference) -> None:
    record, _ = reference
    payload = _part(consortium, "guest", record)
    path = consortium.configs["guest"].parent / record.result["1:hxgb"]["export"]
    doc = json.loads(path.read_text())
    trees = doc["learner"]["gradient_booster"]["model"]["trees"]
    assert len(trees) == 30 and all(not any(t["sum_hessian"]) for t in trees)  # stripped
    x_test, _ = _csv("test")
    booster = xgb.Booster(model_file=str(path))
    theirs = booster.predict(xgb.DMatrix(x_test, feature_names=FEATURES))
    ours = get_predictor("hxgb").combine(payload, x_test, {})
    assert np.max(np.abs(theirs - ours)) < 1e-5


def _windows(blob: bytes, size: int, count: int) -> list[bytes]:
    step = max(1, (len(blob) - size) // count)
    return [blob[i : i + size] for i in range(0, len(blob) - size, step)][:count]


def _coordinator_bytes(c: Consortium) -> bytes:
    files = sorted(c.root.glob("coord.db*"))
    assert files
    return b"".join(f.read_bytes() for f in files)


def test_coordinator_never_holds_the_secret_key_or_decrypted_sums(consortium, reference) -> None:
    record, spy = reference
    stored = _coordinator_bytes(consortium)
    logs = "\n".join(spy.logs).encode()
    # the key holder serialised the secret context once, to seal it to the two other members
    (secret,) = spy.secrets
    public = ckks.public_context_bytes(ckks.load_context(secret, require_secret=True))
    marks = [w for w in _windows(secret, 32, 64) if w not in public]
    assert len(marks) > 20
    text_marks = [base64.b64encode(secret[k:])[200:264] for k in range(3)]
    text_marks += [w.hex().encode() for w in marks[:8]]
    assert text_marks[0] in base64.b64encode(secret)  # the probes would find a stored copy
    for haystack in (stored, logs):
        assert not any(m in haystack for m in marks + text_marks)
    # decrypted sums (bin counts, histograms) as raw int64 or as JSON-like text
    assert len(spy.sums) == 3 * record.result["1:hxgb"]["rounds"]
    checked = 0
    for total in spy.sums[::3]:
        window = _telling_window(total)
        if window is None:
            continue
        raw = window.astype(np.int64).tobytes()
        texts = [sep.join(str(int(v)) for v in window).encode() for sep in (",", ", ")]
        assert raw in total.astype(np.int64).tobytes()  # the probes would find a stored copy
        assert texts[1] in json.dumps(total.tolist()).encode()
        for haystack in (stored, logs):
            assert raw not in haystack and not any(t in haystack for t in texts)
        checked += 1
    assert checked > 80


def _telling_window(total: np.ndarray, size: int = 8) -> np.ndarray | None:
    """Consecutive values of a sum starting at its first non-zero one, if enough are non-zero."""
    nonzero = np.flatnonzero(total)
    if len(nonzero) == 0:
        return None
    window = total[nonzero[0] : nonzero[0] + size]
    return window if np.count_nonzero(window) >= 3 and len(window) == size else None


def test_every_ledger_verifies_and_records_what_was_released(consortium, reference) -> None:
    record, _ = reference
    for party in MEMBERS:
        ledger = consortium.nodes[party].ctx.ledger
        assert ledger.verify() == (True, None)
        entries = ledger.entries(record.job_id)
        kinds = [(e.peer, e.kind) for e in entries]
        assert kinds.count(("coordinator", "hxgb.update")) == record.result["1:hxgb"]["rounds"]
        sealed = [k for k in kinds if k[1] == "hxgb.secret_context"]
        released_key = ("coordinator", "hxgb.public_context") in kinds
        if party == "guest":  # first by name: the key holder
            assert sorted(sealed) == [
                ("host_1", "hxgb.secret_context"),
                ("host_2", "hxgb.secret_context"),
            ]
            assert released_key
        else:
            assert sealed == [] and not released_key
        assert all(e.reveals for e in entries)


class _Untouchable:
    """A silo client that fails the test if the coordinator uses it at all."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the coordinator contacted a silo ({name})")


def test_two_members_are_refused_before_any_silo_is_contacted(consortium) -> None:
    store = consortium.store()
    before = {p: len(consortium.nodes[p].ctx.ledger.entries()) for p in MEMBERS}
    pair = ("guest", "host_1")
    spec = consortium.job(
        {p: "member" for p in pair}, [{"kind": "hxgb", "n_estimators": 2}], name="pair"
    )
    with pytest.raises(JobError, match="at least 3 silos") as err:
        run_job(spec, clients={p: _Untouchable() for p in pair}, store=store)
    assert isinstance(err.value.__cause__, PolicyError)
    assert "read the other silo's" in str(err.value)
    job = next(j for j in store.list_jobs() if j.name == "pair")
    assert job.state == "failed" and "at least 3 silos" in job.reason
    assert {p: len(consortium.nodes[p].ctx.ledger.entries()) for p in MEMBERS} == before
    with pytest.raises(NotFound):
        consortium.nodes["guest"].ctx.sessions.get(job.job_id)


def test_a_member_refuses_two_members_itself(consortium) -> None:
    """A coordinator that skips its own check still gets a refusal from the silo, before any
    data is read."""
    clients = consortium.clients()
    pair = ("guest", "host_1")
    spec = {
        "job_id": "rogue",
        "name": "rogue",
        "steps": [{"kind": "hxgb", "n_estimators": 2}],
        "parties": {p: {"role": "member", "dataset": "main"} for p in pair},
    }
    keys = {p: clients[p].open_job("rogue", spec, resume=False)[0] for p in pair}
    try:
        for p in pair:
            clients[p].set_peers("rogue", keys)
        with pytest.raises(PolicyError, match="at least 3 silos"):
            clients["guest"].step("rogue", "hxgb.start", 1, StepPayload(meta={"step": 0}))
    finally:
        for p in pair:
            clients[p].close_job("rogue", failed=True, reason="test")


def test_early_stopping_releases_the_pooled_validation_loss(consortium) -> None:
    record = _run(
        consortium,
        {
            "n_estimators": 6,
            "max_depth": 2,
            "max_bin": 16,
            "early_stopping_rounds": 2,
            "validation_fraction": 0.2,
        },
        name="early",
    )
    out = record.result["1:hxgb"]
    losses = out["valid_loss"]
    assert len(losses) >= out["trees"] and all(0 < v < 1 for v in losses)
    best = consortium.store().get_model(out["model"]).record["metrics"]["best_iteration"]
    assert out["trees"] == best + 1 and losses[best] == min(losses)
    assert "metrics" not in out  # no evaluate_on: nothing evaluated


def test_evaluation_the_policy_forbids_is_refused_before_training(consortium) -> None:
    with pytest.raises(JobError, match="policy does not allow dataset 'test'") as err:
        _run(
            consortium,
            {"n_estimators": 2, "evaluate_on": {"party": "host_1", "dataset": "test"}},
            name="nope",
        )
    assert isinstance(err.value.__cause__, PolicyError)
    job = next(j for j in consortium.store().list_jobs() if j.name == "nope")
    # host_1 sent nothing: its ledger holds only what it accepted, refused and closed
    entries = consortium.nodes["host_1"].ctx.ledger.entries(job.job_id)
    assert {e.kind for e in entries} <= CONTROL_KINDS
    assert any(e.kind == "job.refused" and "dataset 'test'" in e.reveals for e in entries)


def test_members_with_different_columns_are_told_so(consortium) -> None:
    spec = consortium.job(
        {p: "member" for p in MEMBERS}, [{"kind": "hxgb", "n_estimators": 2}], name="columns"
    )
    spec.parties["host_2"]["columns"] = FEATURES[::-1]
    with pytest.raises(JobError, match="different feature columns"):
        run_job(spec, clients=consortium.clients(), store=consortium.store())
