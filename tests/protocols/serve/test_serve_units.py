"""Online scoring's pieces without a server: compiled SecureBoost, pseudonyms and sealing, the
serving config and policy keys, the request parser, and the leakage page."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from fedsilo import leakage
from fedsilo.errors import ConfigError, CryptoError, ProtocolError
from fedsilo.message import Message
from fedsilo.protocols.secureboost.active import (
    ActiveParty,
    PassiveParty,
    SecureBoostParams,
    run_in_process,
)
from fedsilo.protocols.secureboost.compiled import CompiledForest, CompiledSplits
from fedsilo.protocols.secureboost.model import SplitTable
from fedsilo.protocols.serve.online import (
    KEY,
    PART,
    QUERY,
    open_sealed,
    pseudonyms,
    query_message,
    read_query,
    seal,
)
from fedsilo.silo_node.config import load_silo_config
from fedsilo.silo_node.serving.api import openapi, parse_request

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[3]


def test_compiled_forest_gives_the_batch_floats_with_missing_values() -> None:
    rng = np.random.default_rng(0)
    n = 600
    xa, xp = rng.normal(size=(n, 3)), rng.normal(size=(n, 4))
    y = ((xa[:, 0] + xp[:, 1] + rng.normal(scale=0.5, size=n)) > 0).astype(float)
    params = SecureBoostParams.from_dict(
        {
            "n_estimators": 6,
            "max_depth": 4,
            "max_bin": 16,
            "key_bits": 1024,
            "insecure_min_key_bits": 1024,
        }
    )
    active = ActiveParty("a", xa, y, params=params, passives=["p"])
    passive = PassiveParty("p", xp, insecure_min_key_bits=1024)
    run_in_process(active, {"p": passive})
    model = active.model
    test_a, test_p = rng.normal(size=(300, 3)), rng.normal(size=(300, 4))
    test_p[::3, 1] = np.nan  # missing values take the default side
    test_a[::5, 0] = np.nan
    routes = model.own_splits.route(test_a)
    split_table = SplitTable.from_dict(passive.model_part())
    routes.update(split_table.route(test_p))
    expected = model.predict_proba(len(test_a), routes)
    forest = CompiledForest(model)
    decisions = forest.decisions(len(test_a))
    own = CompiledSplits.of(model.own_splits)
    decisions[:, forest.check_keys("a", own.keys)] = own.left(test_a)
    theirs = CompiledSplits.of(split_table)
    decisions[:, forest.check_keys("p", theirs.keys)] = theirs.left(test_p)
    assert forest.predict_proba(decisions).tolist() == expected.tolist()
    with pytest.raises(Exception, match="other nodes"):
        forest.check_keys("p", own.keys)


def test_pseudonyms_are_keyed_and_sealed_messages_are_bound() -> None:
    k1, k2 = b"\x01" * 32, b"\x02" * 32
    p1 = pseudonyms(k1, ["C1", "C2"])
    assert p1.shape == (2, 16) and p1.dtype == np.uint8
    assert (pseudonyms(k1, ["C1"]) == p1[:1]).all() and not (pseudonyms(k2, ["C1"]) == p1[:1]).all()
    msg = query_message(p1, "online/s/n/1")
    key = b"\x03" * 32
    fields = {"serving_id": "s", "sender": "bank", "recipient": "bureau", "query_id": 1}
    sealed = seal(key, msg, **fields)
    opened = open_sealed(key, sealed, QUERY, **fields)
    assert (read_query(opened)[0] == p1).all()
    for change in ({"query_id": 2}, {"recipient": "lender"}, {"serving_id": "t"}):
        with pytest.raises(CryptoError):
            open_sealed(key, sealed, QUERY, **{**fields, **change})
    with pytest.raises(CryptoError):
        open_sealed(key, sealed[:-1] + bytes([sealed[-1] ^ 1]), QUERY, **fields)
    with pytest.raises(ProtocolError):
        read_query(
            Message(QUERY, meta={"label": "x"}, arrays={"pseudonyms": np.zeros((2, 8), np.uint8)})
        )


def test_every_serve_message_kind_is_documented() -> None:
    page = (ROOT / "docs" / "leakage.md").read_text()
    for kind in (KEY, QUERY, PART):
        assert f"`{kind}`" in page
        assert leakage.describe(kind)


BASE = """\
party = "bank"
listen = "127.0.0.1:50051"
database = "sqlite:///bank.db"
[tls]
insecure_plaintext = true
[datasets.main]
table = "t"
id_column = "id"
features = ["a"]
"""


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("[policy]\nserve_rate_limit = 0\n", "'serve_rate_limit' must be a positive integer"),
        ('[policy]\nserve_models = "m"\n', "'serve_models' must be a list"),
        ('[serving]\nlisten = "127.0.0.1:1"\n', "needs 'ca', 'cert' and 'key' or 'token_file'"),
        ('[serving]\nlisten = "x"\ninsecure_plaintext = true\n', "'listen' = 'x' must be"),
        ('[serving]\nlisten = "127.0.0.1:1"\nca = "ca.pem"\n', "needs all of 'ca', 'cert'"),
        ('[serving]\nlisten = "127.0.0.1:1"\nport = 3\n', "unknown key 'port'"),
        (
            '[serving]\nlisten = "127.0.0.1:1"\ntoken_file = "t"\ninsecure_plaintext = true\n',
            "conflicts with insecure_plaintext",
        ),
    ],
)
def test_bad_serving_config_is_one_line(tmp_path: Path, extra: str, message: str) -> None:
    (tmp_path / "silo.toml").write_text(BASE + extra)
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        load_silo_config(tmp_path / "silo.toml")
    assert "\n" not in str(err.value) and str(err.value).startswith("silo.toml: [")


def test_serving_config_and_policy_defaults(tmp_path: Path) -> None:
    (tmp_path / "tok").write_text("s3cret-token-0123456789\n")
    text = BASE + '[serving]\nlisten = "127.0.0.1:8443"\ntoken_file = "tok"\n'
    (tmp_path / "silo.toml").write_text(text)
    config = load_silo_config(tmp_path / "silo.toml")
    assert config.serving is not None and config.serving.token == "s3cret-token-0123456789"
    assert config.policy.serve_models == frozenset()  # off by default
    (tmp_path / "silo.toml").write_text(BASE)
    assert load_silo_config(tmp_path / "silo.toml").serving is None


def test_request_parser_names_the_fault() -> None:
    txs, deadline = parse_request({"id": "C1"})
    assert [t.id for t in txs] == ["C1"] and deadline is None
    txs, deadline = parse_request(
        {"transactions": [{"id": "C1", "features": {"a": 1.5}}], "deadline_ms": 20}
    )
    assert txs[0].features == {"a": 1.5} and deadline == 20
    for body, message in (
        ([], "JSON object"),
        ({}, "needs 'id'"),
        ({"transactions": [{"x": 1}]}, "transaction 0 needs an 'id'"),
        ({"transactions": [{"id": "a", "features": {"a": "x"}}]}, "map names to numbers"),
        ({"id": "a", "deadline_ms": "soon"}, "'deadline_ms' must be an integer"),
    ):
        with pytest.raises(ProtocolError, match=message):
            parse_request(body)
    spec = openapi("bank")
    assert spec["openapi"].startswith("3.") and "/v1/models/{model}/score" in spec["paths"]


def _get(url: str, token: str | None = None, body: bytes | None = None) -> tuple[int, dict]:
    import json
    import urllib.error
    import urllib.request

    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_the_endpoint_wants_its_bearer_token() -> None:
    from types import SimpleNamespace

    from support import free_port

    from fedsilo.silo_node.config import ServingConfig
    from fedsilo.silo_node.serving.endpoints import start_endpoints
    from fedsilo.silo_node.serving.host import ServingHost

    token = "t0ken-of-the-fraud-engine"
    host = ServingHost(SimpleNamespace(party="bank"))  # type: ignore[arg-type]
    config = ServingConfig(listen=f"127.0.0.1:{free_port()}", token=token)
    endpoints = start_endpoints(config, host)
    try:
        base = f"http://127.0.0.1:{endpoints.http_port}"
        body = b'{"id": "C1"}'
        assert _get(f"{base}/v1/models/m-v1/score", None, body)[0] == 401
        assert _get(f"{base}/v1/models/m-v1/score", "wrong-token-wrong-token", body)[0] == 401
        status, reply = _get(f"{base}/v1/models/m-v1/score", token, body)
        assert status == 404 and "is not served at 'bank'" in reply["error"]
        assert _get(f"{base}/healthz")[0] == 200
        status, spec = _get(f"{base}/openapi.json", token)
        assert status == 200 and spec["info"]["title"].endswith("'bank'")
    finally:
        endpoints.stop()


def test_the_daily_budget_counts_what_the_ledger_already_holds_today() -> None:
    import json
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from fedsilo.errors import LimitExceeded
    from fedsilo.silo_node.serving.guard import COUNTS_MARK, ServeGuard
    from fedsilo.silo_node.serving.record import ServingRecord

    today = datetime.now(UTC).isoformat()
    earlier = SimpleNamespace(
        kind=PART, created_at=today, reveals=f"x{COUNTS_MARK}{json.dumps({'rows': 60})}"
    )
    policy = SimpleNamespace(serve_rate_limit=1000, serve_daily_budget=100)
    ctx = SimpleNamespace(
        party="lender",
        config=SimpleNamespace(policy=policy),
        ledger=SimpleNamespace(entries=lambda job_id=None: [earlier]),
    )
    record = ServingRecord(
        serving_id="s",
        model="m-v1",
        part="p",
        kind="secureboost",
        role="passive",
        party="lender",
        dataset="main",
        active="bank",
        passives=("lender",),
        on_party_down="fail",
        pseudonym_key=b"k" * 32,
    )
    guard = ServeGuard(ctx, record)  # type: ignore[arg-type]
    guard.admit(40)
    with pytest.raises(LimitExceeded, match="daily budget of 100 rows for model 'm-v1'"):
        guard.admit(1)
