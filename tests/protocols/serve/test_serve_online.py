"""Online scoring end to end in one process: three silos on loopback gRPC, the coordinator's
relay, the label holder's HTTP endpoint.

The demo consortium (bank = label holder, bureau and lender = passive) serves a SecureBoost and a
vertical LR model trained in process on a sample of the common ids (small insecure keys: the
models do not depend on them and serving uses no Paillier). What must hold:

* online scores equal batch scores (``score`` step over the PSI alignment) for every id of a
  10,000-id sample, bit for bit, for both kinds;
* an id a passive silo does not hold is scored with that silo's features missing, and the
  response says who contributed;
* a model a passive silo does not serve is refused with its reason (at preparation, and at
  request time after its policy changed); past its rate limit, a request is refused with 429;
* the passive silo's ledger has one aggregated entry per interval, not one per request;
* the coordinator's database and logs hold no raw id.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from serving_support import (
    DEMO,
    ID,
    LABEL,
    ROLES,
    common_sample,
    install,
    read_consortium,
    register,
    train_parts,
)
from sqlalchemy import create_engine, text
from support import Consortium, SiloSpec, free_port

from fedsilo import settings
from fedsilo.coordinator.orchestrator import run_job
from fedsilo.coordinator.serving import ServingRelay, prepare_serving
from fedsilo.errors import JobError
from fedsilo.protocols.serve.online import PART

pytestmark = pytest.mark.e2e

SGB = {"n_estimators": 8, "max_depth": 3, "max_bin": 16}
LR = {"max_iter": 2, "batch_size": 1024}
SGB_MODEL, LR_MODEL, UNSERVED = "credit-sgb-v1", "credit-lr-v1", "credit-unserved-v1"
SAMPLE = 10_000


@dataclass
class Served:
    c: Consortium
    relays: list[ServingRelay]
    url: str
    root: Path

    def post(self, model: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        req = urllib.request.Request(
            f"{self.url}/v1/models/{model}/score",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())


def _policy(models: list[str], rate: int) -> str:
    listed = ", ".join(f'"{m}"' for m in models)
    return f"serve_models = [{listed}]\nserve_rate_limit = {rate}\nserve_daily_budget = 10000000\n"


def _consortium(root: Path, lender_models: list[str], lender_rate: int) -> Consortium:
    tables = read_consortium()
    c = Consortium(root)
    serving = (
        f'[serving]\nlisten = "127.0.0.1:{free_port()}"\ngrpc_listen = "127.0.0.1:{free_port()}"\n'
        "insecure_plaintext = true\n"
    )
    everything = [SGB_MODEL, LR_MODEL, UNSERVED]
    for party in ROLES:
        models, rate = (lender_models, lender_rate) if party == "lender" else (everything, 10**7)
        c.add_silo(
            SiloSpec(
                party,
                DEMO[party],
                tables[party].columns,
                label=LABEL if ROLES[party] == "active" else None,
                id_column=ID,
                policy=_policy(models, rate) + (serving if party == "bank" else ""),
            )
        )
    return c


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("online")
    c = _consortium(root, [SGB_MODEL, LR_MODEL], 10**7)
    tables = read_consortium()
    train_ids = common_sample(tables, 3000, seed=1)
    urls = {p: f"sqlite:///{root / (p + '.db')}" for p in ROLES}
    c.start_all()
    store = c.store()
    for kind, params, name in (("secureboost", SGB, "credit-sgb"), ("lr", LR, "credit-lr")):
        install(urls, train_parts(kind, tables, train_ids, params), kind, f"part-{kind}")
        register(store, kind, f"part-{kind}", name, params)
    register(store, "secureboost", "part-secureboost", "credit-unserved", SGB)
    relays = []
    for model in (SGB_MODEL, LR_MODEL):
        clients = c.clients()
        serving_id, active = prepare_serving(model, clients=clients, store=store)
        relays.append(ServingRelay(serving_id, active, clients).start())
    assert all(r.wait_up(30) for r in relays)
    endpoints = c.nodes["bank"].endpoints
    assert endpoints is not None
    yield Served(c, relays, f"http://127.0.0.1:{endpoints.http_port}", root)
    for r in relays:
        r.stop()
    c.stop_all()


def _batch_scores(s: Served, model: str, table: str) -> dict[str, float]:
    spec = s.c.job(
        {p: r for p, r in ROLES.items()},
        [
            {"kind": "psi", "alignment": f"all-{table}"},
            {"kind": "score", "model": model, "table": table, "chunk_rows": 5000},
        ],
        name=f"batch-{table}",
    )
    record = run_job(spec, clients=s.c.clients(), store=s.c.store())
    assert record.state == "succeeded", record.reason
    engine = create_engine(f"sqlite:///{s.root / 'bank.db'}")
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT id, score FROM {table}")).all()
    engine.dispose()
    return {str(i): float(v) for i, v in rows}


@pytest.mark.parametrize("model", [SGB_MODEL, LR_MODEL])
def test_online_scores_equal_batch_scores(served: Served, model: str) -> None:
    batch = _batch_scores(served, model, f"batch_{model.replace('-', '_')}")
    rng = np.random.default_rng(7)
    sample = sorted(rng.choice(sorted(batch), size=min(SAMPLE, len(batch)), replace=False))
    assert len(sample) == SAMPLE
    online: dict[str, float] = {}
    for start in range(0, len(sample), 500):
        chunk = sample[start : start + 500]
        body = {"transactions": [{"id": i} for i in chunk], "deadline_ms": 5000}
        status, reply = served.post(model, body)
        assert status == 200, reply
        assert not reply["degraded"]
        for r in reply["results"]:
            assert r["contributed"] == ["bank", "bureau", "lender"], r
            online[r["id"]] = r["score"]
    assert [online[i] for i in sample] == [batch[i] for i in sample]


def test_an_id_a_passive_silo_does_not_hold_scores_with_its_features_missing(
    served: Served,
) -> None:
    tables = read_consortium()
    only_bank = sorted(set(tables["bank"].ids) - set(tables["lender"].ids))
    status, reply = served.post(SGB_MODEL, {"id": only_bank[0]})
    assert status == 200, reply
    (result,) = reply["results"]
    assert result["missing"] == {"lender": "not held"}
    assert "lender" not in result["contributed"] and "bank" in result["contributed"]
    assert 0.0 < result["score"] < 1.0


def test_own_features_may_come_in_the_request(served: Served) -> None:
    tables = read_consortium()
    bank = tables["bank"]
    i = common_sample(tables, 1, seed=3)[0]
    row = bank.x[bank.ids.index(i)]
    features = dict(zip(bank.columns, row.tolist(), strict=True))
    _, looked_up = served.post(SGB_MODEL, {"id": i})
    _, given = served.post(SGB_MODEL, {"transactions": [{"id": i, "features": features}]})
    assert given["results"][0]["score"] == looked_up["results"][0]["score"]
    features[bank.columns[0]] += 3.0  # the request's features are the ones used
    status, changed = served.post(SGB_MODEL, {"transactions": [{"id": i, "features": features}]})
    assert status == 200 and "score" in changed["results"][0]
    status, bad = served.post(SGB_MODEL, {"transactions": [{"id": i, "features": {"x": 1}}]})
    assert status == 400 and "not a model feature" in bad["error"]


def test_a_model_a_passive_silo_does_not_serve_is_refused_at_preparation(served: Served) -> None:
    with pytest.raises(JobError, match="does not serve model 'credit-unserved-v1' online"):
        prepare_serving(UNSERVED, clients=served.c.clients(), store=served.c.store())
    status, reply = served.post(UNSERVED, {"id": "C0017530"})
    assert status == 404 and "not served" in reply["error"]


def test_the_passive_ledger_counts_per_interval_not_per_request(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = common_sample(read_consortium(), 30, seed=5)
    ledger = served.c.nodes["bureau"].ctx.ledger
    before = [e for e in ledger.entries() if e.kind == PART]
    monkeypatch.setattr(settings, "SERVING_LEDGER_INTERVAL_S", 3600.0)
    for i in ids:
        assert served.post(SGB_MODEL, {"id": i})[0] == 200
    during = [e for e in ledger.entries() if e.kind == PART]
    assert len(during) == len(before)  # 30 payments, no new row
    monkeypatch.setattr(settings, "SERVING_LEDGER_INTERVAL_S", 0.0)
    assert served.post(SGB_MODEL, {"id": ids[0]})[0] == 200
    after = [e for e in ledger.entries() if e.kind == PART]
    assert len(after) == len(before) + 1
    counts = json.loads(after[-1].reveals.split(" | counts: ")[1])
    assert counts["model"] == SGB_MODEL and counts["requests"] >= 31 and counts["rows"] >= 31


def test_the_coordinator_database_and_logs_hold_no_raw_id(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    ids = common_sample(read_consortium(), 200, seed=9)
    with caplog.at_level(logging.DEBUG):
        status, _ = served.post(SGB_MODEL, {"transactions": [{"id": i} for i in ids]})
        assert status == 200
    coordinator_logs = " ".join(
        r.getMessage() for r in caplog.records if r.name.startswith("fedsilo.coordinator")
    )
    raw = (served.root / "coord.db").read_bytes()
    for i in ids:
        assert i.encode() not in raw
        assert i not in coordinator_logs
    assert served.relays[0].stats()["rows"] >= 200


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The lender serves only the SecureBoost model, at 50 rows/s."""
    root = tmp_path_factory.mktemp("limited")
    c = _consortium(root, [SGB_MODEL], 50)
    tables = read_consortium()
    urls = {p: f"sqlite:///{root / (p + '.db')}" for p in ROLES}
    c.start_all()
    store = c.store()
    ids = common_sample(tables, 1500, seed=2)
    small = {"n_estimators": 2, "max_depth": 2, "max_bin": 8}
    install(urls, train_parts("secureboost", tables, ids, small), "secureboost", "p")
    register(store, "secureboost", "p", "credit-sgb", small)
    clients = c.clients()
    serving_id, active = prepare_serving(SGB_MODEL, clients=clients, store=store)
    relay = ServingRelay(serving_id, active, clients).start()
    assert relay.wait_up(30)
    endpoints = c.nodes["bank"].endpoints
    assert endpoints is not None
    yield Served(c, [relay], f"http://127.0.0.1:{endpoints.http_port}", root)
    relay.stop()
    c.stop_all()


def test_past_its_rate_limit_a_passive_silo_refuses_with_the_reason(limited: Served) -> None:
    ids = common_sample(read_consortium(), 100, seed=4)
    status, reply = limited.post(SGB_MODEL, {"transactions": [{"id": i} for i in ids[:40]]})
    assert status == 200, reply
    status, reply = limited.post(SGB_MODEL, {"transactions": [{"id": i} for i in ids[40:]]})
    assert status == 429
    assert "lender" in reply["error"] and "rate limit of 50 rows/s" in reply["error"]
    refusals = [e for e in limited.c.nodes["lender"].ctx.ledger.entries() if e.kind == PART]
    assert refusals == [] or all("counts" in e.reveals for e in refusals)


def test_a_passive_silo_whose_policy_drops_the_model_refuses_the_stream(limited: Served) -> None:
    c = limited.c
    text_ = (
        c.configs["lender"]
        .read_text()
        .replace(f'serve_models = ["{SGB_MODEL}"]', "serve_models = []")
    )
    c.stop("lender")
    c.configs["lender"].write_text(text_)
    c.start("lender")  # same address: the relay reconnects and is refused
    import time

    deadline = time.monotonic() + 20
    reply: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status, reply = limited.post(SGB_MODEL, {"id": common_sample(read_consortium(), 1)[0]})
        if "does not serve model" in reply.get("error", ""):
            break
        time.sleep(0.3)
    assert status == 503
    assert "lender" in reply["error"] and "does not serve model 'credit-sgb-v1'" in reply["error"]


def test_the_grpc_api_the_python_api_and_the_cli_give_the_same_score(served: Served) -> None:
    import subprocess
    import sys

    import grpc

    from fedsilo.api import OnlineModel
    from fedsilo.protos import fedsilo_pb2 as pb
    from fedsilo.protos import fedsilo_pb2_grpc as pb_grpc

    ids = common_sample(read_consortium(), 3, seed=13)
    _, reply = served.post(SGB_MODEL, {"transactions": [{"id": i} for i in ids]})
    expected = [r["score"] for r in reply["results"]]
    endpoints = served.c.nodes["bank"].endpoints
    assert endpoints is not None and endpoints.grpc_port
    with grpc.insecure_channel(f"127.0.0.1:{endpoints.grpc_port}") as channel:
        stub = pb_grpc.ScoringServiceStub(channel)
        resp = stub.Score(
            pb.ScoreRequest(model=SGB_MODEL, transactions=[pb.ScoreTransaction(id=i) for i in ids]),
            timeout=10,
        )
        assert [r.score for r in resp.results] == expected
        assert list(resp.results[0].contributed) == ["bank", "bureau", "lender"]
        with pytest.raises(grpc.RpcError) as err:
            stub.Score(pb.ScoreRequest(model="nope-v1", transactions=[]), timeout=10)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    proba = OnlineModel(served.url, SGB_MODEL).predict_proba(ids)
    assert proba.shape == (3, 2) and proba[:, 1].tolist() == expected
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "fedsilo.cli.main",
            "score-one",
            SGB_MODEL,
            ids[0],
            "--url",
            served.url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["results"][0]["score"] == expected[0]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "fedsilo.cli.main",
            "score-one",
            UNSERVED,
            ids[0],
            "--url",
            served.url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0 and out.stderr.strip().startswith("fedsilo: error: model")


def test_under_mtls_with_an_https_endpoint_that_wants_client_certificates(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The whole path with the defaults: mTLS silos (session keys signed, so the serving keys
    derive from verified keys), the relay over mTLS, HTTPS with a client certificate."""
    from fedsilo.api import OnlineModel
    from fedsilo.crypto import certs
    from fedsilo.errors import SiloUnavailable

    root = tmp_path_factory.mktemp("secure")
    tables = read_consortium()
    c = Consortium(root, tls=True)
    folder = root / "certs"
    port = free_port()
    for party in ROLES:
        serving = ""
        if party == "bank":
            serving = (
                f'[serving]\nlisten = "127.0.0.1:{port}"\nca = "{folder / "ca.pem"}"\n'
                f'cert = "{folder / "bank.pem"}"\nkey = "{folder / "bank.key"}"\n'
            )
        c.add_silo(
            SiloSpec(
                party,
                DEMO[party],
                tables[party].columns,
                label=LABEL if ROLES[party] == "active" else None,
                id_column=ID,
                policy=_policy([SGB_MODEL], 10**6) + serving,
            )
        )
    certs.issue(folder, "fraud-engine", role="silo")
    urls = {p: f"sqlite:///{root / (p + '.db')}" for p in ROLES}
    small = {"n_estimators": 2, "max_depth": 2, "max_bin": 8}
    parts = train_parts("secureboost", tables, common_sample(tables, 1500, seed=2), small)
    install(urls, parts, "secureboost", "p")
    c.start_all()
    relay = None
    try:
        store = c.store()
        register(store, "secureboost", "p", "credit-sgb", small)
        clients = c.clients()
        serving_id, active = prepare_serving(SGB_MODEL, clients=clients, store=store)
        relay = ServingRelay(serving_id, active, clients).start()
        assert relay.wait_up(30)
        url = f"https://127.0.0.1:{port}"
        ids = common_sample(tables, 2, seed=6)
        model = OnlineModel(
            url,
            SGB_MODEL,
            ca=folder / "ca.pem",
            cert=folder / "fraud-engine.pem",
            key=folder / "fraud-engine.key",
        )
        answer = model.score([{"id": i} for i in ids])
        assert [r["contributed"] for r in answer["results"]] == [["bank", "bureau", "lender"]] * 2
        with pytest.raises(SiloUnavailable):  # no client certificate: the handshake fails
            OnlineModel(url, SGB_MODEL, ca=folder / "ca.pem").score([{"id": ids[0]}])
    finally:
        if relay is not None:
            relay.stop()
        c.stop_all()
