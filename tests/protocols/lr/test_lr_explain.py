"""Vertical LR explanations: per-feature (or per-party) contributions to the margin.

The label holder's own features always by name; a passive silo's per-row values only when the
accepted score step asks (``explain``) and that silo's policy releases them; otherwise the
passive parties' sum, which scoring reveals anyway.
"""

from __future__ import annotations

import numpy as np
import pytest
from bundled_data import load_csv
from sklearn.model_selection import train_test_split

from fedsilo.crypto.sealing import JobKeys
from fedsilo.errors import ProtocolError
from fedsilo.ml.lr_common import LRConfig
from fedsilo.protocols.lr.local import run_vertical
from fedsilo.protocols.lr.silo import KIND
from fedsilo.protocols.lr.vertical import LabelHolder, PassiveParty, VerticalModelPart
from fedsilo.protocols.score.silo import EXPLAINED_PART_KIND, PART_KIND
from fedsilo.silo_node.predict import PredictRequest, get_predictor

KEY_BITS = 512
SPLITS = {"bureau": np.arange(0, 4), "lender": np.arange(4, 10)}


@pytest.fixture(scope="module")
def trained():
    guest, host = load_csv("default_credit_hetero_guest"), load_csv("default_credit_hetero_host")
    y = guest[:, 1]
    train, test = train_test_split(np.arange(y.size), test_size=0.2, stratify=y, random_state=42)
    test = test[:800]
    config = LRConfig(l2=1.0 / train.size, max_iter=3)
    names = list(SPLITS)
    holder = LabelHolder(
        guest[train, 2:],
        y[train],
        feature_names=[f"g{i}" for i in range(guest.shape[1] - 2)],
        config=config,
        passive_parties=names,
        key_bits=KEY_BITS,
        insecure_min_key_bits=KEY_BITS,
    )
    passives = [
        PassiveParty(
            host[train][:, 1:][:, cols],
            party=name,
            feature_names=[f"h{c}" for c in cols],
            config=config,
            passive_parties=names,
            insecure_min_key_bits=KEY_BITS,
        )
        for name, cols in SPLITS.items()
    ]
    run_vertical(holder, passives)
    x = {"bank": guest[test, 2:]} | {n: host[test][:, 1:][:, c] for n, c in SPLITS.items()}
    parts = {"bank": holder.model_part()} | {p.party: p.model_part() for p in passives}
    return x, parts


def _payload(part: VerticalModelPart) -> dict:
    return {"columns": part.feature_names, "part": part.to_dict(), "passive_parties": list(SPLITS)}


def _explain(x, model_parts, level: str | None, names: bool = False):
    """Scores and contributions at the label holder, parts made as the silos make them."""
    keys = {n: JobKeys() for n in model_parts}
    for k in keys.values():
        k.set_peers({n: other.public_bytes for n, other in keys.items()})
    rows = len(x["bank"])

    def request(party: str) -> PredictRequest:
        return PredictRequest("j", "j-lr", "a", 0, rows, party, keys[party])

    predictor = get_predictor(KIND)
    assert predictor.part and predictor.explain and predictor.explain_part
    parts = {}
    for n in SPLITS:
        payload = _payload(model_parts[n])
        msg = predictor.part(payload, x[n], request(n))
        msg.kind = PART_KIND
        if level is not None:
            meta, arrays = predictor.explain_part(payload, x[n], level, names)
            msg.kind, msg.meta, msg.arrays = (
                EXPLAINED_PART_KIND,
                {**msg.meta, **meta},
                {**msg.arrays, **arrays},
            )
        parts[n] = msg
    bank = _payload(model_parts["bank"])
    scores = predictor.combine(bank, x["bank"], parts, request("bank"))
    return scores, predictor.explain(bank, x["bank"], parts, request("bank"))


def _pooled_terms(x, model_parts) -> tuple[np.ndarray, float]:
    """The pooled model (every party's standardiser and coefficients side by side)."""
    order = ["bank", *SPLITS]
    joined = np.hstack([x[p] for p in order])
    mean = np.concatenate([model_parts[p].standardizer.mean for p in order])
    scale = np.concatenate([model_parts[p].standardizer.scale for p in order])
    coef = np.concatenate([model_parts[p].coef_standardised for p in order])
    return (joined - mean) / scale * coef, model_parts["bank"].intercept_standardised


def test_feature_level_equals_the_pooled_models_terms(trained):
    x, model_parts = trained
    scores, c = _explain(x, model_parts, "feature", names=True)
    terms, intercept = _pooled_terms(x, model_parts)
    np.testing.assert_allclose(c.values, terms, rtol=0, atol=1e-12)
    np.testing.assert_allclose(c.bias, intercept)
    margin = np.log(scores / (1 - scores))
    np.testing.assert_allclose(c.margin(), margin, rtol=0, atol=1e-6)
    assert c.labels[:3] == ["g0", "g1", "g2"]
    assert c.labels[len(x["bank"][0]) :] == [f"bureau:h{i}" for i in range(4)] + [
        f"lender:h{i}" for i in range(4, 10)
    ]
    # without released names: the party's own feature index
    _, hidden = _explain(x, model_parts, "feature", names=False)
    assert hidden.labels[-1] == "lender feature 5"
    np.testing.assert_array_equal(hidden.values, c.values)


def test_party_level_and_no_release(trained):
    x, model_parts = trained
    terms, _ = _pooled_terms(x, model_parts)
    d0 = x["bank"].shape[1]
    _, by_party = _explain(x, model_parts, "party")
    assert by_party.labels[d0:] == ["bureau", "lender"]
    np.testing.assert_allclose(by_party.values[:, d0], terms[:, d0 : d0 + 4].sum(axis=1))
    np.testing.assert_allclose(by_party.values[:, d0 + 1], terms[:, d0 + 4 :].sum(axis=1))
    # nothing released: two passive parties appear only as their (masked) sum
    scores, masked = _explain(x, model_parts, None)
    assert masked.labels[d0:] == ["other parties"]
    np.testing.assert_allclose(masked.values[:, d0], terms[:, d0:].sum(axis=1), atol=1e-6)
    np.testing.assert_allclose(masked.margin(), np.log(scores / (1 - scores)), atol=1e-9)


def test_released_values_must_add_up_to_the_masked_sum(trained):
    x, model_parts = trained
    forged = {**x, "lender": x["lender"] + 1.0}  # values the parts' sum does not carry
    predictor = get_predictor(KIND)
    assert predictor.explain_part
    meta, arrays = predictor.explain_part(
        _payload(model_parts["lender"]), forged["lender"], "party", False
    )
    assert meta == {"explain": "party"}
    with pytest.raises(ProtocolError, match="do not add up"):
        _explain_with(x, model_parts, {"lender": arrays})


def _explain_with(x, model_parts, replaced):
    keys = {n: JobKeys() for n in model_parts}
    for k in keys.values():
        k.set_peers({n: other.public_bytes for n, other in keys.items()})
    rows = len(x["bank"])
    predictor = get_predictor(KIND)
    assert predictor.part and predictor.explain and predictor.explain_part
    parts = {}
    for n in SPLITS:
        payload = _payload(model_parts[n])
        request = PredictRequest("j", "j-lr", "a", 0, rows, n, keys[n])
        msg = predictor.part(payload, x[n], request)
        meta, arrays = predictor.explain_part(payload, x[n], "party", False)
        msg.kind, msg.meta = EXPLAINED_PART_KIND, {**msg.meta, **meta}
        msg.arrays = {**msg.arrays, **replaced.get(n, arrays)}
        parts[n] = msg
    request = PredictRequest("j", "j-lr", "a", 0, rows, "bank", keys["bank"])
    return predictor.explain(_payload(model_parts["bank"]), x["bank"], parts, request)
