"""The audit ledger cannot be cut or rewritten unseen, and it records what a silo agreed to.

First the pure parts (per-silo genesis, signed heads, ``check_head``), then real gRPC: a
plaintext consortium where heads are unsigned (and the CLI shows truncation, rewrite and an
expected head the chain does not reach), and an mTLS one where heads are signed at close, kept by
the coordinator and by the other parties, and a forged head is refused and recorded.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from bundled_data import data_file
from sqlalchemy import create_engine, delete, select, update
from support import GUEST, HOST, Consortium, SiloSpec

from fedsilo.coordinator.config import load_coordinator_config, parse_job_spec
from fedsilo.coordinator.connect import connect_silos
from fedsilo.coordinator.orchestrator import run_job
from fedsilo.coordinator.store import JobStore
from fedsilo.crypto import certs
from fedsilo.crypto.ledger_heads import (
    LedgerHead,
    SignedHead,
    sign_head,
    unsigned_head,
    verify_head,
)
from fedsilo.crypto.session_auth import SessionKeySigner
from fedsilo.errors import AuthError, DataError, JobError, NotFound, ProtocolError
from fedsilo.silo_node.demo_data import write_demo_consortium
from fedsilo.silo_node.ledger import LEDGER, Ledger, LedgerEntry, ledger_metadata, spec_hash
from fedsilo.silo_node.node import SiloNode, start_silo
from fedsilo.wire import StepPayload

pytestmark = pytest.mark.e2e

# --- pure: genesis, heads, check_head ------------------------------------------------------------


def _ledger(path: Path, party: str = "bank") -> Ledger:
    ledger = Ledger(create_engine(f"sqlite:///{path}"), party)
    ledger.create_tables()
    return ledger


def _fill(ledger: Ledger, n: int) -> None:
    for i in range(n):
        ledger.append("j", "psi.blind", "bureau", "psi.blinded", 100 + i, f"{i} points")


def _rehash_from(ledger: Ledger, seq: int, reveals: str) -> None:
    """What someone with write access does to hide an edit: rewrite the row, then re-chain."""
    rows = ledger.entries()
    prev = rows[seq - 2].hash if seq > 1 else ledger.genesis().hash
    with ledger.engine.begin() as conn:
        for e in rows[seq - 1 :]:
            draft = replace(
                e, prev_hash=prev, hash="", reveals=reveals if e.seq == seq else e.reveals
            )
            fixed = replace(draft, hash=draft.computed_hash())
            conn.execute(
                update(LEDGER)
                .where(LEDGER.c.seq == e.seq)
                .values(reveals=fixed.reveals, prev_hash=fixed.prev_hash, hash=fixed.hash)
            )
            prev = fixed.hash


def _head(ledger: Ledger) -> LedgerHead:
    seq, hash_ = ledger.head()
    return unsigned_head(ledger.party or "", "j", seq, hash_, ledger.genesis().hash).head


def test_each_silo_has_its_own_genesis(tmp_path: Path) -> None:
    a, b = _ledger(tmp_path / "a.db", "bank"), _ledger(tmp_path / "b.db", "bank")
    _fill(a, 1)
    assert a.entries()[0].prev_hash == a.genesis().hash != b.genesis().hash
    assert a.genesis().valid() and a.verify() == (True, None)
    # a chain presented under another party's name does not verify
    assert Ledger(a.engine, "bureau").verify() == (False, 0)


def test_a_cut_tail_or_a_rechained_edit_passes_the_chain_but_not_the_head(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path / "l.db")
    _fill(ledger, 6)
    head = _head(ledger)
    ledger.check_head(head)
    _rehash_from(ledger, 3, "nothing at all")
    assert ledger.verify() == (True, None)  # the chain alone cannot tell
    with pytest.raises(DataError, match="rewritten: entry 6 differs from signed head seq 6"):
        ledger.check_head(head)
    with ledger.engine.begin() as conn:
        conn.execute(delete(LEDGER).where(LEDGER.c.seq > 4))
    assert ledger.verify() == (True, None)
    with pytest.raises(DataError, match="truncated: signed head seq 6 .* the chain ends at 4"):
        ledger.check_head(head)


def test_a_chain_rebuilt_from_a_new_genesis_is_caught(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path / "l.db")
    _fill(ledger, 3)
    head = _head(ledger)
    with ledger.engine.begin() as conn:
        for table in reversed(ledger_metadata.sorted_tables):
            conn.execute(delete(table))
    _fill(ledger, 3)
    assert ledger.verify() == (True, None)
    with pytest.raises(DataError, match="genesis is not the one of signed head seq 3"):
        ledger.check_head(head)


def test_two_heads_of_one_party_at_one_seq_are_proof_of_a_rewrite(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path / "l.db")
    first = unsigned_head("bureau", "j", 4, "a" * 64, "0" * 64)
    assert ledger.keep_head(first) and not ledger.keep_head(first)
    with pytest.raises(ProtocolError, match="'bureau' at seq 4 conflicts"):
        ledger.keep_head(unsigned_head("bureau", "j", 4, "b" * 64, "0" * 64))
    assert [s.head.hash for s in ledger.heads("bureau")] == ["a" * 64]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, certs.TlsFiles]:
    home = tmp_path_factory.mktemp("pki")
    certs.init_ca(home)
    return {
        p: certs.issue(home, p, role=r)
        for p, r in (("bank", "silo"), ("coordinator", "coordinator"))
    }


def test_a_signed_head_verifies_and_a_changed_one_does_not(pki: dict[str, certs.TlsFiles]) -> None:
    ca = certs.load_certificate(pki["bank"].ca)
    signer = SessionKeySigner.load("bank", pki["bank"])
    signed = sign_head(signer.key, signer.certificate_pem, "bank", "j", 7, "c" * 64, "d" * 64)
    assert verify_head(ca, signed) == signed.head and signed.head.seq == 7
    shorter = signed.statement.replace(b'"seq":7', b'"seq":5')
    with pytest.raises(AuthError, match="signature does not match"):
        verify_head(ca, replace(signed, statement=shorter))
    with pytest.raises(AuthError, match="not signed"):
        verify_head(ca, SignedHead(signed.statement))
    assert SignedHead.from_json(signed.to_json()) == signed
    # the coordinator's certificate key cannot vouch for a silo's head, not even its own
    key = certs.load_private_key(pki["coordinator"].key)
    pem = pki["coordinator"].cert.read_text()
    for party in ("coordinator", "bank"):
        forged = sign_head(key, pem, party, "j", 1, "c" * 64, "d" * 64)
        with pytest.raises(AuthError, match="not that silo's"):
            verify_head(ca, forged)


# --- plaintext consortium, through the CLI -------------------------------------------------------


def fedsilo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fedsilo.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Consortium]:
    c = Consortium(tmp_path_factory.mktemp("plain_ledger"))
    c.add_silo(SiloSpec("bank", data_file("breast_hetero_guest"), GUEST, label="y"))
    c.add_silo(SiloSpec("bureau", data_file("breast_hetero_host"), HOST))
    c.start_all()
    try:
        yield c
    finally:
        c.stop_all()


def _noop(c: Consortium, name: str = "t") -> str:
    spec = c.job({"bank": "active", "bureau": "passive"}, [{"kind": "noop"}], name=name)
    record = run_job(spec, clients=c.clients(), store=c.store())
    assert record.state == "succeeded"
    return record.job_id


def _snapshot(c: Consortium, party: str, name: str) -> Path:
    """A consistent copy of ``party``'s database (WAL included) and a config pointing at it."""
    db = c.root / f"{name}.db"
    with sqlite3.connect(c.root / f"{party}.db") as src, sqlite3.connect(db) as dst:
        src.backup(dst)
    config = c.root / f"{name}.toml"
    text = c.configs[party].read_text()
    config.write_text(text.replace(f"{party}.db", f"{name}.db"))
    return config


def test_jobs_record_spec_hash_caller_and_close_and_heads_are_kept(plain: Consortium) -> None:
    job_id = _noop(plain)
    heads = plain.store().ledger_heads(job_id)
    assert set(heads) == {"bank", "bureau"}
    assert not any(h.signed for h in heads.values())  # plaintext: no key to sign with
    for party, node in plain.nodes.items():
        entries = node.ctx.ledger.entries(job_id)
        kinds = [e.kind for e in entries]
        assert kinds[0] == "job.accepted" and kinds[-1] == "job.closed"
        wire = json.loads(
            json.dumps(
                plain.job({"bank": "active", "bureau": "passive"}, [{"kind": "noop"}]).to_wire(
                    job_id
                )
            )
        )
        assert f"sha256:{spec_hash(wire)}" in entries[0].reveals
        assert "unauthenticated" in entries[0].reveals
        # the head the coordinator keeps is the head the silo signed at close, after the close
        head = heads[party].head
        assert (head.seq, head.hash) == (entries[-1].seq, entries[-1].hash)
        other = "bureau" if party == "bank" else "bank"
        assert node.ctx.ledger.latest_head(other) == heads[other]  # relayed and kept
    out = fedsilo("audit", "--silo", str(plain.configs["bank"]), "--job", job_id)
    assert out.returncode == 0 and "job.accepted" in out.stdout and "job.closed" in out.stdout


def test_a_refused_job_is_recorded_with_its_reason(plain: Consortium) -> None:
    spec = plain.job({"bank": "active", "bureau": "passive"}, [{"kind": "noop"}], name="nope")
    spec.parties["bureau"]["columns"] = ["not_a_column"]
    with pytest.raises(JobError, match="not_a_column"):
        run_job(spec, clients=plain.clients(), store=plain.store())
    job = next(j for j in plain.store().list_jobs() if j.name == "nope")
    refused = [
        e for e in plain.nodes["bureau"].ctx.ledger.entries(job.job_id) if e.kind == "job.refused"
    ]
    assert len(refused) == 1 and refused[0].step == "OpenJob"
    assert "not_a_column" in refused[0].reveals and "unauthenticated" in refused[0].reveals
    out = fedsilo("audit", "--silo", str(plain.configs["bureau"]), "--job", job.job_id)
    assert "job.refused" in out.stdout and "refused OpenJob" in out.stdout
    # a refused step stream is recorded under its job and step, read from its header
    with pytest.raises(NotFound):
        plain.clients()["bank"].step(job.job_id, "job.echo", 1, StepPayload())
    last = plain.nodes["bank"].ctx.ledger.entries(job.job_id)[-1]
    assert (last.kind, last.step) == ("job.refused", "Step job.echo")
    assert "is not open at this silo" in last.reveals


def test_a_truncated_ledger_fails_audit_verify(plain: Consortium) -> None:
    _noop(plain)
    intact = _snapshot(plain, "bank", "intact")
    ok = fedsilo("audit", "verify", "--silo", str(intact))
    assert ok.returncode == 0 and "intact" in ok.stdout and "UNSIGNED" in ok.stdout
    cut = _snapshot(plain, "bank", "cut")
    engine = create_engine(f"sqlite:///{plain.root / 'cut.db'}")
    with engine.begin() as conn:
        last = conn.execute(select(LEDGER.c.seq).order_by(LEDGER.c.seq.desc())).scalar()
        conn.execute(delete(LEDGER).where(LEDGER.c.seq > last - 3))
    engine.dispose()
    out = fedsilo("audit", "verify", "--silo", str(cut))
    assert out.returncode == 3 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and "audit ledger truncated" in out.stderr


def test_a_rewritten_middle_row_fails_audit_verify(plain: Consortium) -> None:
    _noop(plain)
    for name, rechain in (("edited", False), ("rechained", True)):
        config = _snapshot(plain, "bureau", name)
        ledger = Ledger(create_engine(f"sqlite:///{plain.root / (name + '.db')}"), "bureau")
        middle = len(ledger.entries()) // 2
        if rechain:
            _rehash_from(ledger, middle, "nothing to see")
        else:
            with ledger.engine.begin() as conn:
                conn.execute(update(LEDGER).where(LEDGER.c.seq == middle).values(nbytes=1))
        ledger.engine.dispose()
        out = fedsilo("audit", "verify", "--silo", str(config))
        want = "audit ledger rewritten" if rechain else f"tampered at entry {middle}"
        assert out.returncode == 3 and want in out.stderr and out.stderr.count("\n") == 1


def test_expect_head_later_than_the_chain_fails(plain: Consortium) -> None:
    _noop(plain)
    backup = _snapshot(plain, "bank", "backup")  # an old copy someone restores later
    job_id = _noop(plain, name="later")
    later = plain.root / "later-head.json"
    later.write_text(plain.store().ledger_heads(job_id)["bank"].to_json())
    alone = fedsilo("audit", "verify", "--silo", str(backup))
    assert alone.returncode == 0  # its own kept heads end where the copy ends
    out = fedsilo("audit", "verify", "--silo", str(backup), "--expect-head", str(later))
    assert out.returncode == 3 and "audit ledger truncated" in out.stderr
    head = plain.store().ledger_heads(job_id)["bank"].head
    out = fedsilo(
        "audit", "verify", "--silo", str(backup), "--expect-head", f"{head.seq}:{head.hash}"
    )
    assert out.returncode == 3 and "truncated" in out.stderr
    shown = fedsilo("jobs", job_id, "--config", str(plain.root / "coordinator.toml"))
    assert f"ledger head of bank: {head.seq}:{head.hash} (UNSIGNED)" in shown.stdout
    now = _snapshot(plain, "bank", "now")
    for expect in (str(later), head.hash):
        assert (
            fedsilo("audit", "verify", "--silo", str(now), "--expect-head", expect).returncode == 0
        )
    exported = fedsilo("audit", "head", "--silo", str(now))
    assert exported.returncode == 0 and SignedHead.from_json(exported.stdout).head.seq >= head.seq


# --- mTLS: signed at close, kept by the coordinator and the peers --------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, SiloNode]]]:
    root = tmp_path_factory.mktemp("tls_ledger")
    certs.init_ca(root / "certs")
    certs.issue(root / "certs", "coordinator", role="coordinator")
    for party in ("bank", "bureau"):
        certs.issue(root / "certs", party, role="silo")
    configs = write_demo_consortium(root, tls=True)
    nodes = {p: start_silo(configs[p]) for p in ("bank", "bureau")}
    silos = "".join(f'[silos.{p}]\naddress = "{n.address}"\n' for p, n in nodes.items())
    (root / "coordinator.toml").write_text(
        f'name = "coordinator"\ndatabase = "sqlite:///{root / "coord.db"}"\n[tls]\n'
        'ca = "certs/ca.pem"\ncert = "certs/coordinator.pem"\nkey = "certs/coordinator.key"\n'
        + silos
    )
    try:
        yield root, nodes
    finally:
        for node in nodes.values():
            node.stop(grace=None)


def test_tls_heads_are_signed_at_close_and_kept_by_everyone(
    tls: tuple[Path, dict[str, SiloNode]],
) -> None:
    root, nodes = tls
    config = load_coordinator_config(root / "coordinator.toml")
    store, clients = JobStore(config.database_url), connect_silos(config)
    raw = {
        "name": "tls",
        "parties": {
            p: {"role": r, "dataset": "customers"}
            for p, r in (("bank", "active"), ("bureau", "passive"))
        },
        "steps": [{"kind": "noop"}],
    }
    record = run_job(parse_job_spec(raw, root / "job.toml"), clients=clients, store=store)
    ca = certs.load_certificate(root / "certs" / "ca.pem")
    heads = store.ledger_heads(record.job_id)
    for party, node in nodes.items():
        head = verify_head(ca, heads[party])  # signed by that silo's certificate key
        last = node.ctx.ledger.entries(record.job_id)[-1]
        assert (head.party, head.seq, head.hash, last.kind) == (
            party,
            last.seq,
            last.hash,
            "job.closed",
        )
        assert "'coordinator' (mTLS)" in node.ctx.ledger.entries(record.job_id)[0].reveals
        other = "bureau" if party == "bank" else "bank"
        assert node.ctx.ledger.latest_head(other) == heads[other]
        verify_head(ca, node.ctx.ledger.latest_head(other))  # type: ignore[arg-type]
    out = fedsilo("audit", "verify", "--silo", str(root / "bank.toml"))
    assert out.returncode == 0 and "signature verified" in out.stdout, out.stderr
    # a coordinator relaying a shortened copy of bureau's head is refused, and that is recorded
    bureau = heads["bureau"]
    forged = replace(
        bureau, statement=bureau.statement.replace(f'"seq":{bureau.head.seq}'.encode(), b'"seq":1')
    )
    with pytest.raises(AuthError, match="signature does not match"):
        clients["bank"].keep_ledger_heads(record.job_id, [forged])
    refused = nodes["bank"].ctx.ledger.entries(record.job_id)[-1]
    assert (refused.kind, refused.step, refused.peer) == (
        "job.refused",
        "KeepLedgerHeads",
        "coordinator",
    )
    assert [h.head.seq for h in nodes["bank"].ctx.ledger.heads("bureau")] == [bureau.head.seq]


def test_entry_fields_are_hashed_in_canonical_form() -> None:
    e = LedgerEntry(1, "j", "s", "p", "k", 1, "r", "t", "0" * 64, "")
    assert replace(e, reveals="x").computed_hash() != e.computed_hash()
