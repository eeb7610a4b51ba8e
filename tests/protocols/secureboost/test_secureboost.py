"""SecureBoost: federated == centralized (trees identical), == XGBoost, protocol hygiene."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xgboost as xgb
from secureboost_data import load_vertical
from sklearn.metrics import roc_auc_score

from fedsilo import settings
from fedsilo.crypto.paillier import generate_keypair
from fedsilo.errors import ConfigError, CryptoError, ProtocolError
from fedsilo.leakage import describe
from fedsilo.message import Message
from fedsilo.ml.secure_hist import decrypt_many
from fedsilo.protocols.secureboost.active import (
    ActiveParty,
    PassiveParty,
    SecureBoostParams,
    predict_in_process,
    run_in_process,
)
from fedsilo.protocols.secureboost.model import SecureBoostModel, SplitTable

INSECURE = 512


@pytest.fixture(scope="module")
def keypair():
    return generate_keypair(INSECURE, insecure_min_bits=INSECURE)


def _params(**kw):
    base = dict(
        n_estimators=6, max_depth=3, max_bin=16, key_bits=INSECURE, insecure_min_key_bits=INSECURE
    )
    return SecureBoostParams(**{**base, **kw})


def _federated(d, params, keypair, host_splits=None, valid=None, x=None, train=None):
    """Active party with the guest columns, passives with the host columns (split if asked)."""
    guest, host = (d.guest, d.host) if x is None else x
    host_splits = host_splits or [np.arange(host.shape[1])]
    names = [f"h{i}" for i in range(len(host_splits))]
    active = ActiveParty(
        "g",
        guest,
        d.y,
        params=params,
        passives=names,
        valid_rows=valid,
        train_rows=train,
        keypair=keypair,
    )
    passives = {
        n: PassiveParty(n, host[:, cols], insecure_min_key_bits=INSECURE)
        for n, cols in zip(names, host_splits, strict=True)
    }
    stats = run_in_process(active, passives)
    return active, passives, stats


def _centralized(d, params, valid=None, x=None):
    guest, host = (d.guest, d.host) if x is None else x
    active = ActiveParty("g", np.hstack([guest, host]), d.y, params=params, valid_rows=valid)
    assert active.step() == {} and active.done
    return active


def _scores(active, passives, rows, x_guest, x_host_parts):
    tables = {
        n: (p.splits, xh[rows]) for (n, p), xh in zip(passives.items(), x_host_parts, strict=True)
    }
    return predict_in_process(active.model, x_guest[rows], tables)


def _same_trees(a, b):
    assert len(a.model.trees) == len(b.model.trees)
    for s, t in zip(a.model.trees, b.model.trees, strict=True):
        assert s.to_dict() == t.to_dict()


def test_federated_equals_centralized_on_breast(keypair):
    d = load_vertical("breast")
    p = _params()
    fed, passives, stats = _federated(d, p, keypair)
    cen = _centralized(d, p)
    _same_trees(fed, cen)
    fs = _scores(fed, passives, d.test, d.guest, [d.host])
    cs = predict_in_process(cen.model, d.joined[d.test], {})
    np.testing.assert_allclose(fs, cs, rtol=0, atol=1e-12)
    assert roc_auc_score(d.y[d.test], fs) > 0.95
    assert stats.bytes_total > 0 and len(passives["h0"].splits.entries) > 0


def test_three_parties_give_the_same_model(keypair):
    d = load_vertical("breast")
    p = _params(n_estimators=4)
    two, passives2, _ = _federated(d, p, keypair)
    three, passives3, _ = _federated(
        d, p, keypair, host_splits=[np.arange(0, 12), np.arange(12, 20)]
    )
    _same_trees(two, three)
    owners = {
        ref.party
        for t in three.model.trees
        for n in t.split_nodes()
        for ref in [three.model.features[t.feature[n]]]
    }
    assert {"h0", "h1"} <= owners  # both passive parties own splits
    s2 = _scores(two, passives2, d.test, d.guest, [d.host])
    s3 = _scores(three, passives3, d.test, d.guest, [d.host[:, :12], d.host[:, 12:]])
    np.testing.assert_array_equal(s2, s3)


def test_missing_values_subsample_colsample_match_centralized(keypair):
    d = load_vertical("default_credit", rows=2000)
    rng = np.random.default_rng(5)
    guest, host = d.guest.copy(), d.host.copy()
    guest[rng.random(guest.shape) < 0.1] = np.nan
    host[rng.random(host.shape) < 0.2] = np.nan
    p = _params(
        subsample=0.8,
        colsample_bytree=0.7,
        gamma=0.5,
        min_child_weight=2,
        seed=3,
        reg_lambda=2.0,
        learning_rate=0.2,
    )
    fed, passives, _ = _federated(d, p, keypair, x=(guest, host))
    cen = _centralized(d, p, x=(guest, host))
    _same_trees(fed, cen)
    assert any(t.default_left[n] for t in fed.model.trees for n in t.split_nodes())
    fs = _scores(fed, passives, d.test, guest, [host])
    cs = predict_in_process(cen.model, np.hstack([guest, host])[d.test], {})
    np.testing.assert_allclose(fs, cs, atol=1e-12)


def test_federated_trees_are_xgboost_trees(keypair):
    d = load_vertical("default_credit", rows=3000)
    p = _params(n_estimators=8, max_bin=32)
    # XGBoost's sketch depends on row order: both see the training rows in the same order
    fed, passives, _ = _federated(d, p, keypair, valid=d.test, train=d.train)
    xp = dict(
        objective="binary:logistic",
        tree_method="hist",
        max_depth=3,
        eta=0.3,
        max_bin=32,
        reg_lambda=1.0,
        nthread=1,
    )
    bst = xgb.train(xp, xgb.DMatrix(d.joined[d.train], label=d.y[d.train]), 8)
    theirs = json.loads(bst.save_raw("json"))["learner"]["gradient_booster"]["model"]["trees"]
    for ours, t in zip(fed.model.trees, theirs, strict=True):
        assert ours.left == t["left_children"]
        assert [ours.feature[n] for n in ours.split_nodes()] == [
            t["split_indices"][n] for n in ours.split_nodes()
        ]
    ours_p = _scores(fed, passives, d.test, d.guest, [d.host])
    np.testing.assert_allclose(ours_p, bst.predict(xgb.DMatrix(d.joined[d.test])), atol=1e-5)


def test_early_stopping_truncates_every_part(keypair):
    d = load_vertical("breast")
    p = _params(n_estimators=40, early_stopping_rounds=3, learning_rate=0.9, max_depth=4)
    fed, passives, _ = _federated(d, p, keypair, valid=d.test)
    cen = _centralized(d, p, valid=d.test)
    _same_trees(fed, cen)
    best = fed.model.metrics["best_iteration"]
    assert fed.model.n_trees == best + 1 < 40
    assert all(t < fed.model.n_trees for t, _ in passives["h0"].splits.entries)
    assert fed.valid_loss == pytest.approx(cen.valid_loss)


def test_model_json_round_trip_predicts_the_same(keypair):
    d = load_vertical("breast")
    fed, passives, _ = _federated(d, _params(n_estimators=3), keypair)
    model = SecureBoostModel.from_dict(json.loads(json.dumps(fed.model.to_dict())))
    part = json.loads(json.dumps(passives["h0"].model_part()))
    table = SplitTable.from_dict(part)
    a = predict_in_process(model, d.guest, {"h0": (table, d.host)})
    b = _scores(fed, passives, np.arange(len(d.y)), d.guest, [d.host])
    np.testing.assert_array_equal(a, b)


def test_feature_names_shown_only_when_allowed(keypair):
    d = load_vertical("breast")
    p = _params(n_estimators=3)
    names = [f"secret_{i}" for i in range(d.host.shape[1])]
    for reveal in (False, True):
        active = ActiveParty("g", d.guest, d.y, params=p, passives=["h"], keypair=keypair)
        passive = PassiveParty(
            "h",
            d.host,
            feature_names=names,
            reveal_feature_names=reveal,
            insecure_min_key_bits=INSECURE,
        )
        run_in_process(active, {"h": passive})
        shown = " ".join(active.model.feature_importances("weight"))
        assert ("secret_" in shown) == reveal
        assert "h:" in shown


def test_passive_refuses_small_keys_by_default(keypair):
    d = load_vertical("breast")
    active = ActiveParty("g", d.guest, d.y, params=_params(), passives=["h"], keypair=keypair)
    passive = PassiveParty("h", d.host)  # no insecure option: 512-bit keys are refused
    with pytest.raises(CryptoError):
        passive.handle(active.step()["h"])


def test_passive_refuses_bad_messages(keypair):
    d = load_vertical("breast")
    active = ActiveParty("g", d.guest, d.y, params=_params(), passives=["h"], keypair=keypair)
    passive = PassiveParty("h", d.host, insecure_min_key_bits=INSECURE)
    with pytest.raises(ProtocolError):
        passive.handle(Message("sgb.hist_request", meta={"tree": 0}))  # before setup
    setup = active.step()["h"]
    passive.handle(setup)
    with pytest.raises(ProtocolError):
        passive.handle(setup)  # a second setup (replay) is refused
    with pytest.raises(ProtocolError):
        passive.handle(Message("psi.blinded"))
    hostile = Message(
        "sgb.route_request",
        arrays={"rows": np.array([10**6], np.uint32), "trees": np.array([0], np.int32)},
    )
    with pytest.raises(ProtocolError):
        passive.handle(hostile)
    with pytest.raises(ProtocolError):
        passive.handle(Message("sgb.split", meta={"tree": 5}))


def test_replies_to_the_same_request_differ_but_decrypt_the_same(keypair):
    """Histograms are re-randomised: two silos with the same columns answer the same gradients
    with different ciphertexts of the same sums, and the label holder goes on with either."""
    d = load_vertical("breast")
    active = ActiveParty("g", d.guest, d.y, params=_params(), passives=["h"], keypair=keypair)
    setup = active.step()["h"]
    twins = [PassiveParty("h", d.host, insecure_min_key_bits=INSECURE) for _ in range(2)]
    layouts = [p.handle(setup) for p in twins]
    grads = active.step({"h": layouts[0]})["h"]
    one, two = (p.handle(grads) for p in twins)
    assert one is not None and two is not None
    assert np.array_equal(one.array("present"), two.array("present"))
    width = keypair[0].ciphertext_bytes
    a, b = one.blob("packed"), two.blob("packed")
    assert len(a) == len(b) > width
    assert all(a[i : i + width] != b[i : i + width] for i in range(0, len(a), width))
    assert decrypt_many(keypair[1], [a]) == decrypt_many(keypair[1], [b])
    assert active.step({"h": two})  # the next request comes out as usual


def test_passive_refuses_an_oversized_key_or_a_bad_base(keypair):
    d = load_vertical("breast")
    active = ActiveParty("g", d.guest, d.y, params=_params(), passives=["h"], keypair=keypair)
    setup = active.step()["h"]
    top = settings.PAILLIER_MAX_BITS
    changes = [
        ({"n": format((1 << top) + 1, "x")}, f"{top + 1} bits is above the ceiling"),
        ({"rerandomise_base": "1"}, "re-randomisation base"),
        ({"rerandomise_base": format(int(keypair[0].n2) + 3, "x")}, "re-randomisation base"),
        ({"rerandomise_base": None}, "bad sgb.setup"),
    ]
    for change, message in changes:
        meta = {k: v for k, v in {**setup.meta, **change}.items() if v is not None}
        hostile = Message(setup.kind, meta=meta, arrays=setup.arrays)
        with pytest.raises(ProtocolError, match=message):
            PassiveParty("h", d.host, insecure_min_key_bits=INSECURE).handle(hostile)
    assert PassiveParty("h", d.host, insecure_min_key_bits=INSECURE).handle(setup) is not None


def test_params_are_validated_and_round_trip():
    with pytest.raises(ConfigError):
        SecureBoostParams(max_depth=0).validate()
    with pytest.raises(ConfigError):
        SecureBoostParams.from_dict({"n_estimators": 3, "bogus": 1})
    p = SecureBoostParams(n_estimators=7, base_score=0.3)
    assert SecureBoostParams.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    with pytest.raises(ConfigError):
        ActiveParty(
            "g", np.zeros((10, 2)), np.zeros(10), params=SecureBoostParams(early_stopping_rounds=2)
        )


def test_every_message_kind_says_what_it_reveals():
    kinds = "setup layout gradients hist_request histograms split split_reply route_request routes"
    for kind in [*kinds.split(), "finish"]:
        assert describe(f"sgb.{kind}")


@pytest.mark.slow
def test_default_credit_real_settings_within_0002_of_xgboost():
    """The issue's quality bar with 2048-bit keys: 30 trees, depth 3, 32 bins, full data."""
    d = load_vertical("default_credit")
    p = SecureBoostParams(
        n_estimators=30, max_depth=3, learning_rate=0.3, max_bin=32, reg_lambda=1.0
    )
    active = ActiveParty(
        "g", d.guest, d.y, params=p, passives=["h"], valid_rows=d.test, train_rows=d.train
    )
    passive = PassiveParty("h", d.host)
    run_in_process(active, {"h": passive})
    ours = _scores(active, {"h": passive}, d.test, d.guest, [d.host])
    xp = dict(objective="binary:logistic", tree_method="hist", max_depth=3, eta=0.3, max_bin=32)
    bst = xgb.train(xp, xgb.DMatrix(d.joined[d.train], label=d.y[d.train]), 30)
    theirs = bst.predict(xgb.DMatrix(d.joined[d.test]))
    assert abs(roc_auc_score(d.y[d.test], ours) - roc_auc_score(d.y[d.test], theirs)) < 0.002
    cen = ActiveParty("g", d.joined, d.y, params=p, valid_rows=d.test, train_rows=d.train)
    cen.step()
    _same_trees(active, cen)


def test_min_node_rows_withholds_small_nodes(keypair):
    d = load_vertical("breast")
    p = _params(n_estimators=3)
    active = ActiveParty("g", d.guest, d.y, params=p, passives=["h"], keypair=keypair)
    passive = PassiveParty("h", d.host, min_node_rows=10**6, insecure_min_key_bits=INSECURE)
    run_in_process(active, {"h": passive})
    assert not passive.splits.entries  # its features could never win a split
    guest_only = ActiveParty("g", d.guest, d.y, params=p)
    guest_only.step()
    _same_trees(active, guest_only)


def test_every_sgb_message_kind_is_documented():
    from pathlib import Path

    from fedsilo.leakage import kinds

    page = (Path(__file__).resolve().parents[3] / "docs" / "leakage.md").read_text()
    ours = [k.kind for k in kinds() if k.protocol == "sgb"]
    assert len(ours) == 10
    assert [k for k in ours if f"`{k}`" not in page] == []


EXPORTS = {
    "fedsilo.protocols.secureboost.active": ["ActiveParty", "PassiveParty", "SecureBoostParams",
                               "predict_in_process", "read_routes", "routes_message",
                               "run_in_process"],
    "fedsilo.protocols.secureboost.model": ["FORMAT", "FeatureRef", "Routes", "SecureBoostModel",
                                            "SplitTable"],
    "fedsilo.protocols.secureboost.params": ["STEP_KEYS", "SecureBoostParams",
                                             "secureboost_params"],
    "fedsilo.protocols.secureboost.passive": ["PassiveParty"],
    "fedsilo.protocols.secureboost.wire": ["read_routes", "routes_message"],
    "fedsilo.ml.secure_hist": ["EncryptedHistogram", "ObfuscatorStock", "PackingSpec",
                               "decode_histogram", "decrypt_many", "encrypt_gradients",
                               "encrypted_histogram", "feature_groups"],
    "fedsilo.crypto.paillier": ["ObfuscatorTables", "PrivateKey", "PublicKey",
                                "RerandomiserTables", "check_rerandomiser_base", "decrypt",
                                "decrypt_signed", "djn_exponent_bits", "encrypt_packed",
                                "encrypt_reference", "encrypt_with", "generate_keypair",
                                "obfuscators", "pack_ciphertexts", "pack_row", "rerandomise",
                                "rerandomiser_base", "rerandomiser_tables", "rerandomisers",
                                "security_bits", "slot_bits", "slots_per_ciphertext",
                                "tables_for", "unpack_slots"],
    "fedsilo.ml.tree": ["HistLayout", "HistogramSource", "NodeHistogram", "NodeSplit",
                        "PlainSource", "RowPartition", "Split", "Tree", "TreeGrower", "TreeParams",
                        "base_margin", "binned_go_left", "find_best_split", "grow_tree",
                        "leaf_weight", "logistic_gradients", "plain_histogram", "precision_bits",
                        "quantize", "sigmoid"],
    "fedsilo.ml.binning": ["BinMapper", "fit_bins", "xgboost_cuts"],
}  # fmt: skip


@pytest.mark.parametrize("module", sorted(EXPORTS))
def test_exported_names(module):
    import importlib

    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(EXPORTS[module])
    assert all(hasattr(mod, name) for name in mod.__all__)
