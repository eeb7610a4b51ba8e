"""A deviating coordinator, over real gRPC against real silo servers: every step is authorised
against the job spec the silo accepted, parameters come from that spec, an open job cannot be
opened again, and envelopes are bound to job, sender, recipient and order.

The coordinator here is the test itself, holding the same ``SiloClient`` (and the same
coordinator certificate) the real one uses: it opens jobs, relays keys and sends steps of its own
choosing.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bundled_data import data_file
from sqlalchemy import inspect
from support import Consortium, SiloSpec

from fedsilo.coordinator.client import SiloClient
from fedsilo.coordinator.config import JobSpec
from fedsilo.coordinator.jobrun import JobRun
from fedsilo.coordinator.orchestrator import run_job
from fedsilo.crypto.sealing import JobKeys
from fedsilo.crypto.session_auth import SessionKey
from fedsilo.errors import CryptoError, JobError, PolicyError, ProtocolError
from fedsilo.protocols.secureboost.model import SecureBoostModel
from fedsilo.wire import Envelope, StepPayload

pytestmark = pytest.mark.e2e

GUEST = [f"x{i}" for i in range(10)]
HOST = [f"x{i}" for i in range(10)]
PARTIES = {"bank": "active", "bureau": "passive"}
SEQ = itertools.count(1)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Consortium]:
    """Two real silo servers under mTLS (silo-role certificates, a coordinator-role client)."""
    c = Consortium(tmp_path, tls=True)
    c.add_silo(SiloSpec("bank", data_file("breast_hetero_guest"), GUEST, label="y"))
    c.add_silo(SiloSpec("bureau", data_file("breast_hetero_host"), HOST))
    c.start_all()
    yield c
    c.stop_all()


def _open(clients: dict[str, SiloClient], spec: JobSpec, job_id: str) -> dict[str, SessionKey]:
    wire = spec.to_wire(job_id)
    keys = {p: clients[p].open_job(job_id, wire, resume=False)[0] for p in spec.parties}
    for party in spec.parties:
        clients[party].set_peers(job_id, keys)
    return keys


def _step(
    client: SiloClient,
    job_id: str,
    method: str,
    meta: dict[str, Any],
    inbox: list[Envelope] | None = None,
) -> StepPayload:
    payload = StepPayload(meta=meta, envelopes=list(inbox or []))
    return client.step(job_id, method, next(SEQ), payload)


def test_a_noop_job_runs_no_other_step(pair: Consortium) -> None:
    """Opened with a noop step only, a silo refuses every other protocol's step, also the ones
    that would write to its database (``score.plan`` creates a table, PSI an alignment)."""
    clients = pair.clients()
    _open(clients, pair.job(PARTIES, [{"kind": "noop"}]), "noop-only")
    for method in (
        "psi.start",
        "score.plan",
        "score.local_alignment",
        "predict.part",
        "sgb.setup",
        "lr.setup",
        "split.draw",
        "evaluate.finish",
        "hxgb.start",
    ):
        with pytest.raises(PolicyError, match="not part of a 'noop' step"):
            _step(
                clients["bank"],
                "noop-only",
                method,
                {"step": 0, "table": "stolen", "alignment": "x", "mode": "alignment"},
            )
    for meta in ({"step": 1}, {}, {"step": "0"}, {"step": True}):
        with pytest.raises(ProtocolError, match="names no step of the accepted job"):
            _step(clients["bank"], "noop-only", "psi.start", meta)
    store = pair.nodes["bank"].ctx.store
    assert store.list_alignments() == []
    assert "stolen" not in inspect(store.engine).get_table_names()
    echoed = _step(clients["bank"], "noop-only", "job.echo", {"step": 0})
    assert echoed.meta["role"] == "active"


def test_prediction_runs_only_inside_the_step_that_names_it(pair: Consortium) -> None:
    """``predict.part`` belongs to evaluate and score steps only, and there only over the rows the
    accepted step names; a silo whose policy refuses ``score`` refuses every score job."""
    clients = pair.clients()
    spec = pair.job(PARTIES, [{"kind": "psi", "alignment": "b"}, {"kind": "evaluate"}])
    _open(clients, spec, "predict-job")
    ask = {"model_id": "predict-job-secureboost", "alignment": "b", "start": 0, "stop": 50}
    with pytest.raises(PolicyError, match="not part of a 'psi' step"):
        _step(clients["bureau"], "predict-job", "predict.part", {**ask, "step": 0})
    with pytest.raises(PolicyError, match="prediction over alignment 'b'"):
        _step(clients["bureau"], "predict-job", "predict.part", {**ask, "step": 1})


def test_a_policy_without_score_refuses_score_jobs(tmp_path: Path) -> None:
    c = Consortium(tmp_path)
    c.add_silo(SiloSpec("bank", data_file("breast_hetero_guest"), GUEST, label="y"))
    c.add_silo(SiloSpec("bureau", data_file("breast_hetero_host"), HOST))
    text = c.configs["bureau"].read_text()
    c.configs["bureau"].write_text(text.replace('"score", ', "").replace(', "score"', ""))
    assert '"score"' not in c.configs["bureau"].read_text()
    c.start_all()
    try:
        spec = c.job(PARTIES, [{"kind": "score", "model": "m-v1", "alignment": "b"}])
        with pytest.raises(PolicyError, match="does not allow protocol 'score'"):
            _open(c.clients(), spec, "score-job")
    finally:
        c.stop_all()


def _hostile(monkeypatch: pytest.MonkeyPatch, forge: dict[str, Any]) -> list[str]:
    """Make every JobRun.call carry the coordinator's own parameters (as a deviating one would);
    returns the list of methods it forged."""
    forged: list[str] = []
    honest = JobRun.call

    def call(
        self: JobRun,
        party: str,
        method: str,
        meta: dict[str, Any] | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> StepPayload:
        extra = forge.get(method.split(".")[0], {})
        if extra:
            forged.append(method)
        return honest(self, party, method, {**(meta or {}), **extra}, *args, **kwargs)

    monkeypatch.setattr(JobRun, "call", call)
    return forged


def test_parameters_come_from_the_accepted_spec(
    pair: Consortium, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A coordinator that sends its own parameters per step changes nothing: PSI keeps its mode
    and name, the split its fractions, SecureBoost its trees and depth, the part its id; asking
    for predictions over other rows than the accepted evaluate step names is refused."""
    forged = _hostile(
        monkeypatch,
        {
            "psi": {"mode": "cardinality", "alignment": "forged", "reveal": [], "replace": True},
            "split": {"alignment": "forged", "test_fraction": 0.9, "seed": 7},
            "sgb": {
                "params": {"n_estimators": 1, "max_depth": 1, "key_bits": 1024},
                "alignment": "b",
                "model_id": "forged",
            },
            "evaluate": {"alignment": "b-train"},
            "predict": {"alignment": "b-train"},
        },
    )
    spec = pair.job(
        PARTIES,
        [
            {"kind": "psi", "alignment": "b"},
            {"kind": "split", "test_fraction": 0.2},
            {"kind": "secureboost", "n_estimators": 3, "max_depth": 2, "max_bin": 16},
            {"kind": "evaluate"},
        ],
    )
    with pytest.raises(JobError, match="prediction over alignment 'b-train'"):
        run_job(spec, clients=pair.clients(), store=pair.store())
    assert {"psi.start", "split.draw", "sgb.setup", "sgb.save", "predict.part"} <= set(forged)
    bank = pair.nodes["bank"].ctx.store
    names = {a.name: a.rows for a in bank.list_alignments()}
    assert set(names) == {"b", "b-train", "b-valid", "b-test"}
    assert names["b-test"] < names["b-train"]  # a 20 % test part, not the forged 90 %
    (job,) = pair.store().list_jobs()
    part = bank.load_model_part(f"{job.job_id}-secureboost").payload
    model = SecureBoostModel.from_dict(part["model"])
    assert model.n_trees == 3 and max(int(max(t.depth)) for t in model.trees) == 2
    assert "forged" not in {p[0] for p in bank.list_model_parts()}


def test_lr_epochs_stay_within_the_accepted_bound(
    pair: Consortium, monkeypatch: pytest.MonkeyPatch
) -> None:
    _hostile(monkeypatch, {"lr": {"epoch": 5}})
    spec = pair.job(
        PARTIES,
        [
            {"kind": "psi", "alignment": "b"},
            {"kind": "lr", "max_iter": 2, "batch_size": 512},
        ],
    )
    with pytest.raises(JobError, match="outside the 2 epochs the accepted job allows"):
        run_job(spec, clients=pair.clients(), store=pair.store())


def test_an_open_job_is_not_opened_again(pair: Consortium) -> None:
    """A second OpenJob would replace the session and re-arm its step counter: refused, unless
    it resumes the very same spec."""
    clients = pair.clients()
    spec = pair.job(PARTIES, [{"kind": "noop"}])
    _open(clients, spec, "twice")
    _step(clients["bank"], "twice", "job.echo", {"step": 0})
    wire = spec.to_wire("twice")
    with pytest.raises(ProtocolError, match="already open"):
        clients["bank"].open_job("twice", wire, resume=False)
    other = pair.job(PARTIES, [{"kind": "noop"}, {"kind": "psi", "alignment": "z"}])
    with pytest.raises(ProtocolError, match="already open"):
        clients["bank"].open_job("twice", other.to_wire("twice"), resume=True)
    # the refused attempts changed nothing: an old sequence number is still a replay
    with pytest.raises(ProtocolError, match="replayed or out of order"):
        clients["bank"].step("twice", "job.echo", 1, StepPayload(meta={"step": 0}))
    key, _ = clients["bank"].open_job("twice", wire, resume=True)  # same spec: a resume
    assert key.public_key


def test_envelopes_cannot_be_reflected_replayed_or_moved(pair: Consortium) -> None:
    """The label holder's first PSI batch to the bureau, relayed dishonestly: reflected back to
    the label holder as if from the bureau, delivered twice, or delivered in another job."""
    clients = pair.clients()
    spec = pair.job(PARTIES, [{"kind": "psi", "alignment": "b"}])
    for job in ("env-a", "env-b"):
        _open(clients, spec, job)
        for party in PARTIES:
            _step(clients[party], job, "psi.start", {"step": 0})
    out = _step(clients["bank"], "env-a", "psi.pump", {"step": 0})
    (env,) = out.outbox_for("bureau")
    reflected = Envelope("bureau", "bank", env.sealed)
    with pytest.raises(ProtocolError, match="failed authentication"):
        _step(clients["bank"], "env-a", "psi.pump", {"step": 0}, [reflected])
    with pytest.raises(ProtocolError, match="failed authentication"):
        _step(clients["bureau"], "env-b", "psi.pump", {"step": 0}, [env])
    _step(clients["bureau"], "env-a", "psi.pump", {"step": 0}, [env])
    with pytest.raises(ProtocolError, match="replayed or out of order"):
        _step(clients["bureau"], "env-a", "psi.pump", {"step": 0}, [env])


def _keys(job_id: str = "j") -> tuple[JobKeys, JobKeys]:
    a, b = JobKeys(party="a", job_id=job_id), JobKeys(party="b", job_id=job_id)
    a.set_peers({"b": b.public_bytes})
    b.set_peers({"a": a.public_bytes})
    return a, b


def test_sealing_binds_job_sender_recipient_and_order() -> None:
    a, b = _keys()
    first, second = a.seal("b", b"one", step="s.x"), a.seal("b", b"two", step="s.x")
    with pytest.raises(CryptoError):
        a.open("b", first)  # reflected: the same X25519 agreement, but the wrong direction
    with pytest.raises(CryptoError):
        b.open("a", first[:8] + b"\x00\x03s.y" + first[13:])  # another step in clear
    assert b.open("a", second) == b"two"
    with pytest.raises(ProtocolError, match="replayed or out of order"):
        b.open("a", first)  # older than one already opened
    b_in_k = JobKeys(secret=b.secret, party="b", job_id="k")  # same keys, another job id
    b_in_k.set_peers({"a": a.public_bytes})
    with pytest.raises(CryptoError):
        b_in_k.open("a", a.seal("b", b"three"))  # sealed in job j, opened in job k
    assert b.open("a", a.seal("b", b"four")) == b"four"
