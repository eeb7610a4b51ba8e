"""Federated logistic regression: parity with scikit-learn on real data, and the protocol's guards.

Vertical runs use small Paillier keys through the explicit ``insecure_min_key_bits`` option (the
arithmetic is the same at 2048 bits; ``bench/bench_lr.py`` runs that size). Horizontal runs use
the real CKKS parameters.
"""

from __future__ import annotations

import json
from pathlib import Path

import gmpy2
import numpy as np
import pytest
from bundled_data import load_csv
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from fedsilo import settings
from fedsilo.crypto import ckks, paillier
from fedsilo.errors import ConfigError, CryptoError, DataError, PolicyError, ProtocolError
from fedsilo.message import Message, pack_uints
from fedsilo.ml.lr_common import LRConfig, Standardizer, epoch_batches, sklearn_c
from fedsilo.ml.relay import Relay
from fedsilo.ml.secure_hist import ObfuscatorStock
from fedsilo.protocols.hlr.horizontal import (
    HLRConfig,
    HorizontalLRModel,
    HorizontalSilo,
    aggregate,
    check_silo_count,
)
from fedsilo.protocols.hlr.local import run_horizontal
from fedsilo.protocols.lr import paillier as he
from fedsilo.protocols.lr.local import run_vertical
from fedsilo.protocols.lr.vertical import LabelHolder, PassiveParty, VerticalModelPart

TEST_KEY_BITS = 512
AUC_TOLERANCE = 0.005


# --- vertical --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hetero() -> dict[str, np.ndarray]:
    guest, host = load_csv("default_credit_hetero_guest"), load_csv("default_credit_hetero_host")
    assert np.array_equal(guest[:, 0], host[:, 0])
    y = guest[:, 1]
    train, test = train_test_split(np.arange(y.size), test_size=0.2, stratify=y, random_state=42)
    return {"guest": guest[:, 2:], "host": host[:, 1:], "y": y, "train": train, "test": test}


def _sklearn_auc(x_train, y_train, x_test, y_test, l2: float) -> float:
    std = Standardizer.fit(x_train)
    est = LogisticRegression(C=sklearn_c(l2, y_train.size), max_iter=2000)
    est.fit(std.transform(x_train), y_train)
    return float(roc_auc_score(y_test, est.decision_function(std.transform(x_test))))


def _vertical(data, host_splits: list[np.ndarray], config: LRConfig):
    tr, te = data["train"], data["test"]
    names = [f"host{i}" for i in range(len(host_splits))]
    holder = LabelHolder(
        data["guest"][tr],
        data["y"][tr],
        feature_names=[f"g{i}" for i in range(13)],
        config=config,
        passive_parties=names,
        key_bits=TEST_KEY_BITS,
        insecure_min_key_bits=TEST_KEY_BITS,
    )
    passives = [
        PassiveParty(
            data["host"][tr][:, cols],
            party=name,
            feature_names=[f"h{c}" for c in cols],
            config=config,
            passive_parties=names,
            insecure_min_key_bits=TEST_KEY_BITS,
        )
        for name, cols in zip(names, host_splits, strict=True)
    ]
    relay = Relay()
    run_vertical(holder, passives, relay)
    partials = {
        p.party: relay.carry(p.score_message(data["host"][te][:, cols], "test"))
        for p, cols in zip(passives, host_splits, strict=True)
    }
    scores = holder.decision_function(data["guest"][te], partials, "test")
    return holder, passives, relay, scores


@pytest.fixture(scope="module")
def vertical_two(hetero):
    config = LRConfig(l2=1.0 / hetero["train"].size)
    return config, _vertical(hetero, [np.arange(10)], config)


def test_vertical_two_silos_matches_sklearn(hetero, vertical_two):
    config, (holder, _, relay, scores) = vertical_two
    tr, te = hetero["train"], hetero["test"]
    joined = np.hstack([hetero["guest"], hetero["host"]])
    reference = _sklearn_auc(joined[tr], hetero["y"][tr], joined[te], hetero["y"][te], config.l2)
    auc = roc_auc_score(hetero["y"][te], scores)
    assert abs(auc - reference) <= AUC_TOLERANCE, (auc, reference)
    assert holder.history[-1].stop and len(relay.history) == len(holder.history)


def test_vertical_three_silos_matches_sklearn_and_two(hetero, vertical_two):
    config, (_, _, _, scores_two) = vertical_two
    _, passives, _, scores = _vertical(hetero, [np.arange(5), np.arange(5, 10)], config)
    tr, te = hetero["train"], hetero["test"]
    joined = np.hstack([hetero["guest"], hetero["host"]])
    reference = _sklearn_auc(joined[tr], hetero["y"][tr], joined[te], hetero["y"][te], config.l2)
    assert abs(roc_auc_score(hetero["y"][te], scores) - reference) <= AUC_TOLERANCE
    # same joint model whether the host's columns sit at one silo or two: masks cancel exactly
    np.testing.assert_allclose(scores, scores_two, atol=1e-4)
    assert [p.model_part().feature_names for p in passives] == [
        [f"h{i}" for i in range(5)],
        [f"h{i}" for i in range(5, 10)],
    ]


def test_vertical_model_parts_score_like_the_protocol(hetero, vertical_two):
    _, (holder, passives, _, scores) = vertical_two
    te = hetero["test"]
    parts = [holder.model_part(), passives[0].model_part()]
    restored = [VerticalModelPart.from_json(p.to_json()) for p in parts]
    local = restored[0].partial_score(hetero["guest"][te]) + restored[1].partial_score(
        hetero["host"][te]
    )
    np.testing.assert_allclose(local, scores, atol=1e-5)
    # raw-unit coefficients and offsets give the same scores as the standardised form
    raw = hetero["guest"][te] @ parts[0].coef + parts[0].offset
    raw += hetero["host"][te] @ parts[1].coef + parts[1].offset
    np.testing.assert_allclose(raw, scores, atol=1e-5)
    assert set(parts[1].coefficients()) == {f"h{i}" for i in range(10)}


def test_vertical_model_part_refuses_bad_json():
    for text in ["{}", "[1]", json.dumps({"format": "x"}), "not json"]:
        with pytest.raises(DataError):
            VerticalModelPart.from_json(text)


# --- vertical: protocol guards and arithmetic -------------------------------------------------
@pytest.fixture(scope="module")
def small_key():
    return paillier.generate_keypair(TEST_KEY_BITS, insecure_min_bits=TEST_KEY_BITS)


def test_encrypted_gradient_is_exact(small_key):
    public, key = small_key
    rng = np.random.default_rng(1)
    rho = rng.normal(size=300) / 300
    x = rng.normal(size=(300, 4)) * 3
    r_int = he.residual_integers(rho, settings.LR_RESIDUAL_FRAC_BITS)
    x_int = he.feature_exponents(x, settings.LR_FEATURE_FRAC_BITS)
    grads = he.encrypted_gradient(public, he.encrypt_residuals(ObfuscatorStock(key), r_int), x_int)
    expected = [
        sum(int(a) * int(b) for a, b in zip(r_int, x_int[:, j], strict=True)) for j in range(4)
    ]
    assert [int(paillier.decrypt_signed(key, g)) for g in grads] == expected
    width, slots = he.slot_layout(public.bits, settings.LR_RESIDUAL_FRAC_BITS, x_int)
    blob, masks = he.pack_and_mask(public, grads, width, slots)
    opened = he.decrypt_packed(key, blob)
    assert all(o != e for o, e in zip(opened, expected, strict=False))  # masked
    assert he.unmask(public, opened, masks, width, slots, 4) == expected


def test_multiexp_matches_powmod(small_key):
    public, _ = small_key
    rng = np.random.default_rng(2)
    bases = [gmpy2.mpz(int(v)) for v in rng.integers(2, 2**62, size=50)]
    exps = rng.integers(0, 2**20, size=50)
    expected = gmpy2.mpz(1)
    for b, e in zip(bases, exps.tolist(), strict=True):
        expected = expected * gmpy2.powmod(b, e, public.n2) % public.n2
    assert he._multiexp(bases, exps, public.n2, 6) == expected


def _pair(config: LRConfig, rows: int = 400, n_passive: int = 1):
    rng = np.random.default_rng(3)
    names = [f"p{i}" for i in range(n_passive)]
    holder = LabelHolder(
        rng.normal(size=(rows, 2)),
        rng.integers(0, 2, rows),
        feature_names=["a", "b"],
        config=config,
        passive_parties=names,
        key_bits=TEST_KEY_BITS,
        insecure_min_key_bits=TEST_KEY_BITS,
    )
    passives = [
        PassiveParty(
            rng.normal(size=(rows, 3)),
            party=n,
            feature_names=["c", "d", "e"],
            config=config,
            passive_parties=names,
            insecure_min_key_bits=TEST_KEY_BITS,
        )
        for n in names
    ]
    for p in passives:
        p.accept_public_key(holder.public_key_message())
    return holder, passives


def test_partial_masks_cancel_and_hide():
    config = LRConfig(batch_size=100)
    holder, passives = _pair(config, n_passive=3)
    for p in passives:
        for peer, msg in p.pair_seed_messages().items():
            next(q for q in passives if q.party == peer).accept_pair_seed(p.party, msg)
    msgs = {p.party: p.partial_message(0, 0) for p in passives}
    # weights are zero, so each true partial is 0: the masked words must not be
    assert all(np.count_nonzero(m.array("u")) > 90 for m in msgs.values())
    np.testing.assert_array_equal(holder.sum_partials(msgs, "train/0/0", 100), np.zeros(100))
    with pytest.raises(ProtocolError, match="already used"):
        passives[0].partial_message(0, 0)


def test_partial_without_pair_seeds_is_refused():
    holder, passives = _pair(LRConfig(batch_size=100), n_passive=2)
    with pytest.raises(ProtocolError, match="pair seeds"):
        passives[0].partial_message(0, 0)


def _lr_payload(part: VerticalModelPart, coef: list[float], passives: list[str]) -> dict:
    data = part.to_dict()
    data["standardised"]["coef"] = coef
    data["coef"] = coef  # only the standardised coefficients score; kept consistent in shape
    return {"columns": part.feature_names, "part": data, "passive_parties": passives}


def test_federated_lr_scoring_masks_partials_with_seeds_agreed_in_the_job():
    """Scoring parts of two passive silos are uniform words; only their sum reaches the holder."""
    from fedsilo.crypto.sealing import JobKeys
    from fedsilo.protocols.lr.silo import KIND
    from fedsilo.protocols.score.silo import PART_KIND
    from fedsilo.silo_node.predict import PredictRequest, get_predictor

    holder, passives = _pair(LRConfig(batch_size=100), rows=400, n_passive=2)
    names = [p.party for p in passives]
    keys = {n: JobKeys() for n in ["bank", *names]}
    for k in keys.values():
        k.set_peers({n: other.public_bytes for n, other in keys.items()})
    rng = np.random.default_rng(5)
    x = {n: rng.normal(size=(50, 3)) for n in names} | {"bank": rng.normal(size=(50, 2))}
    payloads = {
        n: _lr_payload(p.model_part(), [0.5, -1.0, 2.0], names)
        for n, p in zip(names, passives, strict=True)
    }
    payloads["bank"] = _lr_payload(holder.model_part(), [1.0, 0.25], names)

    def request(party: str, start: int = 0) -> PredictRequest:
        return PredictRequest(
            job_id="j",
            model_id="j-lr",
            alignment="a",
            start=start,
            stop=start + 50,
            party=party,
            keys=keys[party],
        )

    predictor = get_predictor(KIND)
    assert predictor.part is not None
    parts = {}
    for n in names:
        msg = predictor.part(payloads[n], x[n], request(n))
        plain = VerticalModelPart.from_dict(payloads[n]["part"]).partial_score(x[n])
        fixed = np.round(plain * 2.0**settings.LR_PARTIAL_FRAC_BITS).astype(np.int64)
        assert np.count_nonzero(msg.array("u").view(np.int64) == fixed) == 0  # masked
        assert (
            msg.array("u").tolist()
            != predictor.part(payloads[n], x[n], request(n, 50)).array("u").tolist()
        )
        msg.kind = PART_KIND  # as the score step relays it
        parts[n] = msg
    expect = sum(
        VerticalModelPart.from_dict(payloads[n]["part"]).partial_score(x[n])
        for n in ["bank", *names]
    )
    scores = predictor.combine(payloads["bank"], x["bank"], parts, request("bank"))
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-expect)), atol=1e-6)
    with pytest.raises(ProtocolError, match="not for"):  # masks of another range do not cancel
        predictor.combine(payloads["bank"], x["bank"], parts, request("bank", 50))


def test_out_of_order_steps_are_refused():
    holder, (passive,) = _pair(LRConfig(batch_size=100))
    partial = {"p0": passive.partial_message(0, 0)}
    with pytest.raises(ProtocolError, match="out of order"):
        holder.residual_message(0, 1, partial)
    residuals = holder.residual_message(0, 0, partial)
    with pytest.raises(ProtocolError, match="out of order"):
        holder.residual_message(0, 0, partial)
    masked = passive.gradient_message(residuals)
    with pytest.raises(ProtocolError, match="not asked for"):
        passive.gradient_message(residuals)
    opened = holder.decrypt_gradients({"p0": masked})["p0"]
    # one opening per batch: the holder is no decryption oracle for residual ciphertexts
    with pytest.raises(ProtocolError, match="not asked for"):
        holder.decrypt_gradients({"p0": masked})
    passive.apply_gradient(opened)
    with pytest.raises(ProtocolError, match="pending"):
        passive.apply_gradient(opened)
    with pytest.raises(ProtocolError, match="closed before"):
        holder.end_epoch(0)


def test_holder_opens_no_more_than_a_gradient():
    holder, (passive,) = _pair(LRConfig(batch_size=100))
    residuals = holder.residual_message(0, 0, {"p0": passive.partial_message(0, 0)})
    # a deviating passive sends the residual ciphertexts back in place of its gradient
    forged = Message(
        "lr.masked_gradient", meta={"epoch": 0, "batch": 0}, blobs={"ct": residuals.blob("ct")}
    )
    with pytest.raises(ProtocolError, match="too many"):
        holder.decrypt_gradients({"p0": forged})


def test_small_keys_need_the_insecure_option(small_key):
    public, _ = small_key
    msg = Message("lr.public_key", blobs={"n": pack_uints([public.n], public.ciphertext_bytes)})
    passive = PassiveParty(
        np.zeros((200, 2)),
        party="p",
        feature_names=["a", "b"],
        config=LRConfig(),
        passive_parties=["p"],
    )
    with pytest.raises(CryptoError, match="below the minimum"):
        passive.accept_public_key(msg)


def test_hostile_ciphertexts_are_refused(small_key):
    public, _ = small_key
    too_big = pack_uints([public.n2 + 5], public.ciphertext_bytes)
    with pytest.raises(ProtocolError):
        he.encrypted_gradient(public, too_big, np.ones((1, 2), dtype=np.int64))
    with pytest.raises(ProtocolError):
        he.encrypted_gradient(public, b"\x01" * 7, np.ones((1, 2), dtype=np.int64))


def test_batches_never_tiny_and_agree():
    batches = epoch_batches(1000, 300, epoch=2, seed=7)
    assert min(b.size for b in batches) >= 300
    assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(1000))
    assert all(
        np.array_equal(a, b)
        for a, b in zip(batches, epoch_batches(1000, 300, epoch=2, seed=7), strict=True)
    )


def test_policy_and_config_guards():
    with pytest.raises(ConfigError):
        LRConfig(batch_size=10)
    with pytest.raises(ConfigError, match="unknown"):
        LRConfig.from_spec({"l2": 0.1, "learning_rat": 1.0})
    assert LRConfig.from_spec({"class_weight": [1, 3]}).class_weight == (1, 3)
    with pytest.raises(ConfigError):
        LRConfig(class_weight="weird")
    with pytest.raises(PolicyError, match="exceed"):
        PassiveParty(
            np.zeros((500, 150)),
            party="p",
            feature_names=[str(i) for i in range(150)],
            config=LRConfig(batch_size=120),
            passive_parties=["p"],
        )


def test_standardizer_constant_column():
    std = Standardizer.fit(np.array([[1.0, 5.0], [3.0, 5.0]]))
    assert std.scale.tolist() == [1.0, 1.0]
    np.testing.assert_allclose(std.transform([[2.0, 5.0]]), [[0.0, 0.0]])


# --- horizontal -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def homo() -> dict[str, object]:
    parts = [load_csv(f"default_credit_homo_{n}") for n in ("guest", "host_1", "host_2")]
    return {"parts": parts, "test": load_csv("default_credit_homo_test")}


def _silos(parts, config: HLRConfig) -> list[HorizontalSilo]:
    names = [f"x{i}" for i in range(parts[0].shape[1] - 2)]
    return [
        HorizontalSilo(
            p[:, 2:],
            p[:, 1],
            feature_names=names,
            config=config,
            party=f"bank{i}",
            n_silos=len(parts),
        )
        for i, p in enumerate(parts)
    ]


@pytest.fixture(scope="module")
def horizontal(homo):
    parts = homo["parts"]
    n = sum(p.shape[0] for p in parts)
    config = HLRConfig(l2=1.0 / n)
    relay = Relay()
    model = run_horizontal(_silos(parts, config), relay)
    return config, model, relay


def test_horizontal_matches_pooled_sklearn(homo, horizontal):
    config, model, relay = horizontal
    pooled = np.vstack(homo["parts"])
    test = homo["test"]
    reference = _sklearn_auc(pooled[:, 2:], pooled[:, 1], test[:, 2:], test[:, 1], config.l2)
    auc = roc_auc_score(test[:, 1], model.decision_function(test[:, 2:]))
    assert abs(auc - reference) <= AUC_TOLERANCE, (auc, reference)
    assert relay.history[-1]["converged"]
    # federated standardisation equals the pooled statistics (to the 2**-20 grid)
    np.testing.assert_allclose(model.standardizer.mean, pooled[:, 2:].mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(model.standardizer.scale, pooled[:, 2:].std(axis=0), rtol=1e-5)


def test_horizontal_export_and_sklearn(homo, horizontal):
    _, model, _ = horizontal
    x = homo["test"][:, 2:]
    est = model.to_sklearn()
    np.testing.assert_allclose(est.predict_proba(x)[:, 1], model.predict_proba(x), atol=1e-12)
    np.testing.assert_array_equal(est.predict(x), (model.predict_proba(x) > 0.5).astype(int))
    again = HorizontalLRModel.from_json(model.to_json())
    np.testing.assert_allclose(again.predict_proba(x), model.predict_proba(x), atol=1e-12)
    exported = json.loads(model.to_json())
    assert exported["features"] == [f"x{i}" for i in range(23)] and len(exported["coef"]) == 23
    with pytest.raises(DataError):
        HorizontalLRModel.from_json(json.dumps({"format": "x"}))


def test_horizontal_all_silos_agree(homo):
    parts = [p[:600] for p in homo["parts"]]
    silos = _silos(parts, HLRConfig(max_iter=3))
    run_horizontal(silos)
    models = [s.model() for s in silos]
    assert all(np.array_equal(m.coef, models[0].coef) for m in models)


def test_two_silos_are_refused(homo):
    with pytest.raises(PolicyError, match="subtract its own update"):
        check_silo_count(2)
    with pytest.raises(PolicyError):
        _silos(homo["parts"][:2], HLRConfig())
    silo = _silos(homo["parts"], HLRConfig())[0]
    _, public = silo.create_keys()
    msg = silo.stats_message(0)
    with pytest.raises(PolicyError):
        aggregate(public, [msg, msg])


def test_coordinator_refuses_a_secret_context(homo):
    silo = _silos(homo["parts"], HLRConfig())[0]
    secret, _ = silo.create_keys()
    msg = silo.stats_message(0)
    with pytest.raises(CryptoError):
        aggregate(secret.blob("context"), [msg, msg, msg])
    assert not ckks.load_context(
        ckks.public_context_bytes(silo._context()), require_secret=False
    ).has_secret_key()


def test_coordinator_refuses_mixed_rounds(homo):
    silos = _silos(homo["parts"], HLRConfig())
    secret, public = silos[0].create_keys()
    for s in silos[1:]:
        s.accept_keys(secret)
    with pytest.raises(ProtocolError, match="different rounds"):
        aggregate(
            public,
            [
                silos[0].stats_message(0),
                silos[1].stats_message(0),
                Message(
                    "hlr.update",
                    meta={"phase": "round", "index": 0, "length": 2},
                    blobs=dict(silos[2].stats_message(0).blobs),
                ),
            ],
        )


def test_horizontal_statistics_survive_raw_money_columns(homo):
    """Sums of squares of raw amounts (~1e20) would break exact sums; the staged rounds do not."""
    parts = [p[:2000].copy() for p in homo["parts"]]
    for p in parts:
        p[:, 2:5] = p[:, 2:5] * 1.3e5 + 1.6e5
    silos = _silos(parts, HLRConfig(max_iter=1))
    run_horizontal(silos)
    pooled = np.vstack(parts)[:, 2:]
    std = silos[0].model().standardizer
    np.testing.assert_allclose(std.mean, pooled.mean(axis=0), rtol=1e-9, atol=1e-5)
    np.testing.assert_allclose(std.scale, pooled.std(axis=0), rtol=1e-5)


def test_every_lr_message_kind_is_documented():
    import fedsilo.protocols.hlr.silo  # noqa: F401  (registers the kinds)
    import fedsilo.protocols.lr.silo  # noqa: F401
    from fedsilo.leakage import kinds

    page = (Path(__file__).resolve().parents[3] / "docs" / "leakage.md").read_text()
    ours = [k.kind for k in kinds() if k.protocol in ("lr", "hlr")]
    assert {"lr.partial", "lr.residuals", "hlr.sum", "hlr.public_context"} <= set(ours)
    assert [k for k in ours if f"`{k}`" not in page] == []


def test_exported_names():
    from fedsilo.ml import lr_common, relay
    from fedsilo.protocols.hlr import horizontal as lr_horizontal
    from fedsilo.protocols.hlr import local as hlr_local
    from fedsilo.protocols.lr import local as lr_local
    from fedsilo.protocols.lr import paillier as lr_paillier
    from fedsilo.protocols.lr import vertical as lr_vertical

    expected = {
        lr_common: [
            "LRConfig",
            "Standardizer",
            "epoch_batches",
            "learning_rate",
            "log_loss",
            "parse_model_json",
            "read_standardised",
            "sample_weights",
            "sigmoid",
            "sklearn_c",
            "standardised_json",
        ],
        lr_vertical: [
            "EpochResult",
            "GRADIENT_OPENED",
            "LabelHolder",
            "MASKED_GRADIENT",
            "PAIR_SEED",
            "PARTIAL",
            "PUBLIC_KEY",
            "PassiveParty",
            "RESIDUALS",
            "VerticalModelPart",
            "initial_weights",
            "mask_partial",
            "sum_masked_partials",
        ],
        lr_horizontal: [
            "HLRConfig",
            "HorizontalLRModel",
            "HorizontalSilo",
            "RoundResult",
            "SECRET_CONTEXT",
            "STATS_PHASES",
            "SUM",
            "UPDATE",
            "aggregate",
            "check_silo_count",
        ],
        lr_paillier: [
            "decrypt_packed",
            "encrypt_residuals",
            "encrypted_gradient",
            "feature_exponents",
            "pack_and_mask",
            "residual_integers",
            "slot_layout",
            "unmask",
        ],
        lr_local: ["run_vertical"],
        hlr_local: ["run_horizontal"],
        relay: ["Relay"],
    }
    for module, names in expected.items():
        assert sorted(module.__all__) == sorted(names), module.__name__
        assert all(hasattr(module, n) for n in names), module.__name__
