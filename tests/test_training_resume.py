"""Training resumes inside the step: SecureBoost from the last completed tree, LR from the last
completed epoch, and the final model is the one an uninterrupted run makes.

In process (fast): the label holder and passive parties are interrupted after tree ``k``, rebuilt
from their JSON checkpoints (with a new Paillier key) and trained to the end.

Over gRPC with silos as subprocesses (``tests/support.py``'s ``Silos``): a psi -> split ->
training job whose passive silo ``telco`` is SIGKILLed once ``k`` trees (epochs) are done, the
silo restarted and the job resumed (``run_job(..., job_id=same, resume=True)``). The job says it
resumed at ``k``, the label holder's ledger shows only the remaining trees were trained, and every
silo's stored model part equals that of an uninterrupted run.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from secureboost_data import load_vertical
from sqlalchemy import create_engine, select
from support import PARTIES, Silos

from fedsilo.coordinator.orchestrator import run_job
from fedsilo.coordinator.store import JobStore
from fedsilo.errors import DataError, JobError
from fedsilo.message import Message, decode, encode
from fedsilo.ml.lr_common import LRConfig
from fedsilo.progress import ProgressTask
from fedsilo.protocols.lr import vertical as vlr
from fedsilo.protocols.secureboost.active import (
    ActiveParty,
    PassiveParty,
    SecureBoostParams,
    run_in_process,
)
from fedsilo.protocols.secureboost.wire import GRADIENTS, SPLIT
from fedsilo.silo_node.store import LEDGER, MODEL_PARTS

pytestmark = pytest.mark.e2e

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

LR_CONFIG = LRConfig(batch_size=128, max_iter=4, tol=0.0, lr_schedule="step", seed=5)


def _lr_parties() -> tuple[vlr.LabelHolder, list[vlr.PassiveParty]]:
    d = load_vertical("breast")
    names = ["h0", "h1"]
    holder = vlr.LabelHolder(
        d.guest,
        d.y,
        feature_names=[f"g{i}" for i in range(d.guest.shape[1])],
        config=LR_CONFIG,
        passive_parties=names,
        key_bits=INSECURE,
        insecure_min_key_bits=INSECURE,
    )
    passives = [
        vlr.PassiveParty(
            d.host[:, cols],
            party=name,
            feature_names=[f"h{c}" for c in cols],
            config=LR_CONFIG,
            passive_parties=names,
            insecure_min_key_bits=INSECURE,
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
    holder: vlr.LabelHolder,
    passives: list[vlr.PassiveParty],
    epoch: int,
    saved: dict[str, dict[str, Any]],
    *,
    close: bool = True,
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
    for epoch in range(LR_CONFIG.max_iter):
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
    for epoch in range(start, LR_CONFIG.max_iter):
        _lr_epoch(holder, passives, epoch, saved)
    assert holder.history == full.history
    for ours, theirs in zip([holder, *passives], [full, *full_passives], strict=True):
        np.testing.assert_allclose(
            ours.model_part().coef_standardised,
            theirs.model_part().coef_standardised,
            rtol=0,
            atol=1e-12,
        )
        assert ours.model_part().offset == pytest.approx(theirs.model_part().offset, abs=1e-12)


def test_lr_passive_that_cannot_reach_the_epoch_starts_over() -> None:
    holder, passives = _lr_parties()
    saved: dict[str, dict[str, Any]] = {}
    _lr_epoch(holder, passives, 0, saved)
    assert passives[0].resume_at(saved["h0"], 3) == 0  # the coordinator sees 3 != 0, refuses
    assert passives[0].resume_at(None, 1) == 0


# --- over gRPC, a silo SIGKILLed mid-training --------------------------------------------------

#: real 2048-bit keys (the silos' default policy), few small trees: the whole file stays fast
SGB = {"n_estimators": 4, "max_depth": 3, "max_bin": 16}
LR = {"batch_size": 128, "max_iter": 4, "tol": 0.0}
KILL_AFTER = 2


class KillAfter:
    """Progress that SIGKILLs a silo once ``n`` trees or epochs of the training step are done.

    The driver reports a tree as the label holder's ``sgb.step`` reply (the next tree's
    gradients) comes back, so the kill lands before the passive silo sees that tree.
    """

    def __init__(self, silos: Silos, party: str, n: int) -> None:
        self.silos, self.party, self.n = silos, party, n
        self.done, self.counting, self.killed = 0.0, False, False

    def task(self, description: str, total: float | None = None) -> ProgressTask:
        self.counting = description.startswith(("SecureBoost", "vertical LR"))
        return self

    def note(self, message: str) -> None:
        return None

    def advance(self, amount: float = 1) -> None:
        if not self.counting or self.killed:
            return
        self.done += amount
        if self.done >= self.n:
            self.silos.signal(self.party, signal.SIGKILL)
            self.silos.procs[self.party].wait(timeout=30)
            self.killed = True

    def finish(self) -> None:
        return None


def _job(s: Silos, alignment: str, training: dict[str, Any]) -> Any:
    return s.c.job(
        PARTIES,
        [
            {"kind": "psi", "alignment": alignment},
            {"kind": "split", "test_fraction": 0.2},
            training,
        ],
        name="resume",
    )


def _part(s: Silos, party: str, model_id: str) -> dict[str, Any]:
    """``party``'s stored model part, read from its database."""
    engine = create_engine(f"sqlite:///{s.c.root / (party + '.db')}")
    try:
        with engine.connect() as conn:
            stmt = select(MODEL_PARTS.c.payload).where(MODEL_PARTS.c.model_id == model_id)
            text = conn.execute(stmt).scalar_one()
    finally:
        engine.dispose()
    return dict(json.loads(text))


def _sent(s: Silos, party: str, job_id: str, kind: str) -> int:
    """How many ``kind`` messages ``party``'s ledger records for the job."""
    engine = create_engine(f"sqlite:///{s.c.root / (party + '.db')}")
    try:
        with engine.connect() as conn:
            stmt = select(LEDGER.c.seq).where((LEDGER.c.job_id == job_id) & (LEDGER.c.kind == kind))
            return len(conn.execute(stmt).all())
    finally:
        engine.dispose()


def _kill_then_resume(s: Silos, store: JobStore, training: dict[str, Any]) -> None:
    """Run job ``crash`` until telco dies after ``KILL_AFTER`` units, restart it, resume."""
    killer = KillAfter(s, "telco", KILL_AFTER)
    with pytest.raises(JobError, match="telco"):
        run_job(
            _job(s, "crash", training),
            clients=s.clients(),
            store=store,
            job_id="crash",
            progress=killer,
        )
    assert killer.killed
    s.start("telco")
    record = run_job(
        _job(s, "crash", training), clients=s.clients(), store=store, job_id="crash", resume=True
    )
    assert record.state == "succeeded"


def _resumed_events(store: JobStore, job_id: str) -> list[str]:
    return [m for _at, m in store.events(job_id) if "resumed at" in m]


def _same_parts(s: Silos, ref: str, resumed: str, key: str) -> None:
    for party in PARTIES:
        ours, theirs = _part(s, party, f"{resumed}-{key}"), _part(s, party, f"{ref}-{key}")
        assert ours == theirs, party


@pytest.mark.slow
def test_secureboost_resumes_after_the_last_completed_tree(silos: Silos) -> None:
    store = silos.store()
    training = {"kind": "secureboost", **SGB}
    ref = run_job(_job(silos, "ref", training), clients=silos.clients(), store=store, job_id="ref")
    _kill_then_resume(silos, store, training)
    assert _resumed_events(store, "crash") == [f"secureboost resumed at tree {KILL_AFTER}"]
    n = SGB["n_estimators"]
    # trees 0..k sent before the kill, k..n-1 after: tree k twice, the first k trees once
    assert _sent(silos, "bank", "crash", "sgb.gradients") == 2 * (n + 1)
    assert _sent(silos, "bank", "ref", "sgb.gradients") == 2 * n
    assert ref.result["3:secureboost"]["trees"] == n
    _same_parts(silos, "ref", "crash", "secureboost")


@pytest.mark.slow
def test_vertical_lr_resumes_after_the_last_completed_epoch(silos: Silos) -> None:
    store = silos.store()
    training = {"kind": "lr", "key_bits": 2048, **LR}
    run_job(_job(silos, "ref", training), clients=silos.clients(), store=store, job_id="ref")
    _kill_then_resume(silos, store, training)
    assert _resumed_events(store, "crash") == [f"lr resumed at epoch {KILL_AFTER}"]
    record = store.get_job("crash")
    assert record.result["3:lr"]["epochs"] == LR["max_iter"]
    for party in PARTIES:
        ours = _part(silos, party, "crash-lr")["part"]
        theirs = _part(silos, party, "ref-lr")["part"]
        np.testing.assert_allclose(ours["coef"], theirs["coef"], rtol=0, atol=1e-12)
        assert ours["offset"] == pytest.approx(theirs["offset"], abs=1e-12)


def test_driver_refuses_silos_that_disagree_where_training_resumes() -> None:
    from fedsilo.coordinator.resume import resumed_at
    from fedsilo.wire import StepPayload

    agree = {p: StepPayload(meta={"resumed_at": 2}) for p in PARTIES}
    assert resumed_at(agree, "tree") == 2
    assert resumed_at({"bank": StepPayload(meta={})}, "tree") == 0
    with pytest.raises(JobError, match="telco at tree 0"):
        resumed_at({**agree, "telco": StepPayload(meta={"resumed_at": 0})}, "tree")
