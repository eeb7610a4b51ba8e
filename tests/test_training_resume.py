"""Training resumes inside the step: SecureBoost from the last completed tree, LR from the last
completed epoch, and the final model is the one an uninterrupted run makes.

In process (fast): the label holder and passive parties are interrupted after tree ``k``, rebuilt
from their JSON checkpoints (with a new Paillier key) and trained to the end.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from secureboost_data import load_vertical

from fedsilo.errors import DataError
from fedsilo.message import Message, decode, encode
from fedsilo.ml import lr_vertical as vlr
from fedsilo.ml.lr_common import LRConfig
from fedsilo.ml.secureboost import ActiveParty, PassiveParty, SecureBoostParams, run_in_process
from fedsilo.ml.sgb_wire import GRADIENTS, SPLIT

INSECURE = 512


def _params(**kw: Any) -> SecureBoostParams:
    base = dict(
        n_estimators=6, max_depth=3, max_bin=16, key_bits=INSECURE, insecure_min_key_bits=INSECURE
    )
    return SecureBoostParams(**{**base, **kw})  # type: ignore[arg-type]


def _parties(
    params: SecureBoostParams, valid: np.ndarray | None = None
) -> tuple[ActiveParty, dict[str, PassiveParty]]:
    d = load_vertical("breast")
    active = ActiveParty("g", d.guest, d.y, params=params, passives=["h0", "h1"], valid_rows=valid)
    passives = {
        "h0": PassiveParty("h0", d.host[:, :5], insecure_min_key_bits=INSECURE),
        "h1": PassiveParty("h1", d.host[:, 5:], insecure_min_key_bits=INSECURE),
    }
    return active, passives


def _json(state: Mapping[str, Any]) -> dict[str, Any]:
    return dict(json.loads(json.dumps(state, allow_nan=False)))


def _interrupted(
    params: SecureBoostParams, k: int, valid: np.ndarray | None = None
) -> dict[str, dict[str, Any]]:
    """Every party's last checkpoint when the label holder has completed ``k`` trees.

    The passives checkpoint as the silo steps do (after gradients and split messages).
    """
    active, passives = _parties(params, valid)
    saved: dict[str, dict[str, Any]] = {}
    inbox: dict[str, Message] = {}
    while not active.done:
        outbox = active.step(inbox)
        snapshot = active.take_checkpoint()
        if snapshot is not None:
            saved["g"] = _json(snapshot)
            if len(snapshot["trees"]) == k:
                return saved
        inbox = {}
        for name, msg in outbox.items():
            reply = passives[name].handle(decode(encode(msg)))
            if msg.kind in (GRADIENTS, SPLIT):
                saved[name] = _json(passives[name].checkpoint())
            if reply is not None:
                inbox[name] = decode(encode(reply))
    raise AssertionError(f"training ended before tree {k}")


@pytest.mark.parametrize(
    ("kw", "k", "with_valid"),
    [
        ({}, 3, False),
        ({"n_estimators": 40, "early_stopping_rounds": 3, "learning_rate": 0.9}, 4, True),
    ],
)
def test_secureboost_resumed_in_process_equals_uninterrupted(
    kw: dict[str, Any], k: int, with_valid: bool
) -> None:
    params = _params(**kw)
    valid = load_vertical("breast").test if with_valid else None
    full, full_passives = _parties(params, valid)
    full_stats = run_in_process(full, full_passives)
    saved = _interrupted(params, k, valid)

    active, passives = _parties(params, valid)
    assert active.restore(saved["g"]) == k
    for name, passive in passives.items():
        passive.restore(saved[name])
    stats = run_in_process(active, passives)
    assert all(p.start_tree == k for p in passives.values())
    assert active.model.to_dict() == full.model.to_dict()
    assert active.valid_loss == full.valid_loss
    for name, passive in passives.items():
        assert passive.model_part() == full_passives[name].model_part()
    # no gradients or splits for the restored trees (the setup counts under tree k - 1)
    assert min(stats.bytes_per_tree) == k - 1 and stats.bytes_per_tree[k - 1] < 10_000
    assert stats.messages < full_stats.messages


def test_passive_without_checkpoint_does_not_follow_a_resumed_label_holder() -> None:
    params = _params()
    saved = _interrupted(params, 2)
    active, passives = _parties(params)
    active.restore(saved["g"])
    setup = active.step()
    passives["h0"].handle(setup["h0"])
    assert passives["h0"].start_tree == 0  # the coordinator sees 2 != 0 and refuses


def test_bad_checkpoints_are_refused() -> None:
    active, passives = _parties(_params())
    with pytest.raises(DataError):
        active.restore({"format": "something else"})
    with pytest.raises(DataError):
        passives["h0"].restore({"format": "x", "tree": 1, "splits": []})


# --- vertical LR, in process ---------------------------------------------------------------------

LR_CONFIG = LRConfig(batch_size=128, max_epochs=4, tol=0.0, lr_schedule="step", seed=5)


def _lr_parties() -> tuple[vlr.LabelHolder, list[vlr.PassiveParty]]:
    d = load_vertical("breast")
    names = ["h0", "h1"]
    holder = vlr.LabelHolder(
        d.guest, d.y, feature_names=[f"g{i}" for i in range(d.guest.shape[1])], config=LR_CONFIG,
        passive_parties=names, key_bits=INSECURE, insecure_min_key_bits=INSECURE,
    )
    passives = [
        vlr.PassiveParty(
            d.host[:, cols], party=name, feature_names=[f"h{c}" for c in cols], config=LR_CONFIG,
            passive_parties=names, insecure_min_key_bits=INSECURE,
        )
        for name, cols in (("h0", range(5)), ("h1", range(5, 10)))
    ]
    key = holder.public_key_message()
    for passive in passives:
        passive.accept_public_key(key)
    for passive in passives:
        for peer, msg in passive.pair_seed_messages().items():
            next(p for p in passives if p.party == peer).accept_pair_seed(passive.party, msg)
    return holder, passives


def _lr_epoch(
    holder: vlr.LabelHolder, passives: list[vlr.PassiveParty], epoch: int,
    saved: dict[str, dict[str, Any]], *, close: bool = True,
) -> None:
    """One epoch's batches (the silo steps' order), checkpointing as the silo steps do."""
    for batch in range(holder.batches_in_epoch(epoch)):
        partials = {p.party: p.partial_message(epoch, batch) for p in passives}
        residuals = holder.residual_message(epoch, batch, partials)
        masked = {p.party: p.gradient_message(residuals) for p in passives}
        opened = holder.decrypt_gradients(masked)
        for p in passives:
            p.apply_gradient(opened[p.party])
            snapshot = p.take_checkpoint()
            if snapshot is not None:
                saved[p.party] = _json(snapshot)
    if close:
        holder.end_epoch(epoch)
        saved["g"] = _json(holder.checkpoint())


@pytest.mark.parametrize("passives_ahead", [False, True])
def test_vertical_lr_resumed_in_process_equals_uninterrupted(passives_ahead: bool) -> None:
    full, full_passives = _lr_parties()
    for epoch in range(LR_CONFIG.max_epochs):
        _lr_epoch(full, full_passives, epoch, {})

    holder, passives = _lr_parties()
    saved: dict[str, dict[str, Any]] = {}
    for epoch in range(2):
        _lr_epoch(holder, passives, epoch, saved)
    if passives_ahead:  # the label holder died after the last batch, before closing the epoch
        _lr_epoch(holder, passives, 2, saved, close=False)

    holder, passives = _lr_parties()  # restarted: new keys, new pair seeds
    start = holder.restore(saved["g"])
    assert start == 2 and len(holder.history) == 2
    assert all(p.resume_at(saved[p.party], start) == start for p in passives)
    for epoch in range(start, LR_CONFIG.max_epochs):
        _lr_epoch(holder, passives, epoch, saved)
    assert holder.history == full.history
    for ours, theirs in zip([holder, *passives], [full, *full_passives], strict=True):
        np.testing.assert_allclose(
            ours.model_part().coef_standardised, theirs.model_part().coef_standardised,
            rtol=0, atol=1e-12,
        )
        assert ours.model_part().offset == pytest.approx(theirs.model_part().offset, abs=1e-12)


def test_lr_passive_that_cannot_reach_the_epoch_starts_over() -> None:
    holder, passives = _lr_parties()
    saved: dict[str, dict[str, Any]] = {}
    _lr_epoch(holder, passives, 0, saved)
    assert passives[0].resume_at(saved["h0"], 3) == 0  # the coordinator sees 3 != 0, refuses
    assert passives[0].resume_at(None, 1) == 0
