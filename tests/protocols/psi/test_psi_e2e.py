"""PSI end to end: three silos on real gRPC (SQLite, and PostgreSQL), string ids with partial
overlap in shuffled order, checked against a plaintext intersection; and a search of everything
the coordinator handled (relayed bytes, logs, its database) for raw ids or unblinded hashes."""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from support import Consortium, SiloSpec

from fedsilo import settings
from fedsilo.coordinator.client import SiloClient
from fedsilo.coordinator.orchestrator import run_job
from fedsilo.errors import JobError
from fedsilo.psi import _x25519 as x
from fedsilo.psi._ids import pack_ids
from fedsilo.wire import StepPayload, pack_step

PARTIES = {"bank": "active", "bureau": "passive", "telco": "passive"}
UNIVERSE = [f"C-{i:05d}-{'éß'[i % 2]}" for i in range(400)]
SETS = {"bank": UNIVERSE[0:300], "bureau": UNIVERSE[50:350], "telco": UNIVERSE[100:400]}
SHARED = set(UNIVERSE[100:300])


def write_csv(path: Path, ids: list[str], label: bool) -> Path:
    rng = random.Random(path.name)
    rows = ids[:]
    rng.shuffle(rows)
    head = "id,f1" + (",y" if label else "")
    lines = [f"{i},{rng.random():.4f}" + (f",{rng.randint(0, 1)}" if label else "") for i in rows]
    path.write_text("\n".join([head, *lines]) + "\n", encoding="utf-8")
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_urls(request: pytest.FixtureRequest) -> Iterator[dict[str, str | None]]:
    """Per party: None (a SQLite file) or a URL to its own fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield dict.fromkeys(PARTIES)
        return
    server = request.getfixturevalue("pg_server")
    admin = create_engine(server)
    schemas = {p: f"t_{uuid.uuid4().hex[:12]}" for p in PARTIES}
    with admin.begin() as conn:
        for schema in schemas.values():
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    base = make_url(server)
    yield {
        p: base.update_query_dict({"options": f"-csearch_path={s}"}).render_as_string(
            hide_password=False
        )
        for p, s in schemas.items()
    }
    with admin.begin() as conn:
        conn.execute(text("SET LOCAL lock_timeout = '10s'"))
        for schema in schemas.values():
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def consortium(tmp_path: Path, db_urls: dict[str, str | None]) -> Iterator[Consortium]:
    c = Consortium(tmp_path)
    for party, ids in SETS.items():
        csv = write_csv(tmp_path / f"{party}.csv", ids, label=party == "bank")
        c.add_silo(
            SiloSpec(
                party, csv, ["f1"], label="y" if party == "bank" else None, db_url=db_urls[party]
            )
        )
    c.start_all()
    yield c
    c.stop_all()
    for node in c.nodes.values():
        node.ctx.store.engine.dispose()


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every byte the coordinator sends to or receives from a silo's Step RPC."""
    seen: list[bytes] = []
    real = SiloClient.step

    def step(
        self: SiloClient, job_id: str, method: str, seq: int, payload: StepPayload, **kw: float
    ) -> StepPayload:
        seen.append(pack_step(payload, request=True))
        reply = real(self, job_id, method, seq, payload, **kw)
        seen.append(pack_step(reply, request=False))
        return reply

    monkeypatch.setattr(SiloClient, "step", step)
    return seen


def stored(c: Consortium, party: str, name: str) -> list[str]:
    return [i for chunk in c.nodes[party].ctx.store.iter_alignment_ids(name) for i in chunk]


def psi_job(c: Consortium, **step: object):
    return c.job(PARTIES, [{"kind": "psi", "alignment": "common", **step}], name="psi-t")


def test_three_silos_align_exactly(
    consortium: Consortium, wire: list[bytes], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    store = consortium.store()
    record = run_job(psi_job(consortium), clients=consortium.clients(), store=store)
    assert record.state == "succeeded"
    assert record.result["1:psi"]["count"] == len(SHARED)
    assert record.result["1:psi"]["stored_at"] == sorted(PARTIES)
    bank = stored(consortium, "bank", "common")
    assert set(bank) == SHARED and len(bank) == len(SHARED)
    assert stored(consortium, "bureau", "common") == bank == stored(consortium, "telco", "common")
    assert bank == sorted(bank)  # stored in id order: reproducible runs, nothing new revealed

    # nothing the coordinator touched holds an id or an unblinded hash of one
    ctx = f"fedsilo-psi|job={record.job_id}|alignment=common".encode()
    hashes = x.hash_to_points(*pack_ids(UNIVERSE), ctx)
    needles = [i.encode() for i in UNIVERSE] + [h.tobytes()[:12] for h in hashes]
    needles += [h.tobytes()[:12].hex().encode() for h in hashes]
    haystacks = {
        "relayed bytes": b"".join(wire),
        "logs": caplog.text.encode(),
        "job database": b"".join(p.read_bytes() for p in tmp_path.glob("coord.db*")),
        "job record": repr(store.get_job(record.job_id)).encode(),
    }
    assert len(wire) > 10
    for where, hay in haystacks.items():
        leaks = [n for n in needles if n in hay]
        assert not leaks, f"{where} holds {len(leaks)} ids or hashes, e.g. {leaks[0]!r}"


def test_cardinality_mode_stores_nothing(consortium: Consortium) -> None:
    store = consortium.store()
    record = run_job(
        psi_job(consortium, mode="cardinality"), clients=consortium.clients(), store=store
    )
    out = record.result["1:psi"]
    assert out["count"] == len(SHARED) and out["stored_at"] == [] and out["alignment"] is None
    assert all(not n.ctx.store.list_alignments() for n in consortium.nodes.values())


def test_reveal_to_leader_only(consortium: Consortium) -> None:
    record = run_job(
        psi_job(consortium, reveal="leader"), clients=consortium.clients(), store=consortium.store()
    )
    assert record.result["1:psi"]["stored_at"] == ["bank"]
    assert set(stored(consortium, "bank", "common")) == SHARED
    assert not consortium.nodes["telco"].ctx.store.list_alignments()


def test_minimum_intersection_refusal_leaves_no_alignment(tmp_path: Path) -> None:
    c = Consortium(tmp_path)
    for party, ids in SETS.items():
        policy = "min_intersection = 500\n" if party == "telco" else ""
        csv = write_csv(tmp_path / f"{party}.csv", ids, label=party == "bank")
        c.add_silo(
            SiloSpec(party, csv, ["f1"], label="y" if party == "bank" else None, policy=policy)
        )
    c.start_all()
    try:
        with pytest.raises(JobError, match="minimum of 500 set by telco"):
            run_job(psi_job(c), clients=c.clients(), store=c.store())
        assert all(not n.ctx.store.list_alignments() for n in c.nodes.values())
    finally:
        c.stop_all()


def test_a_silo_that_goes_away_mid_protocol_fails_the_job_cleanly(
    consortium: Consortium, monkeypatch: pytest.MonkeyPatch
) -> None:
    clients = consortium.clients()
    real = SiloClient.step
    calls = {"n": 0}

    def step(
        self: SiloClient, job_id: str, method: str, seq: int, payload: StepPayload, **kw: float
    ) -> StepPayload:
        if method == "psi.pump" and self.party == "telco":
            calls["n"] += 1
            if calls["n"] == 2:
                consortium.stop("telco")
        return real(self, job_id, method, seq, payload, **kw)

    monkeypatch.setattr(SiloClient, "step", step)
    with pytest.raises(JobError, match="telco"):
        run_job(psi_job(consortium), clients=clients, store=consortium.store())
    assert all(not n.ctx.store.list_alignments() for n in consortium.nodes.values())


@pytest.mark.parametrize("mode", ["alignment", "cardinality"])
def test_many_small_batches_through_the_relay(
    consortium: Consortium, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """Batches of 64 ids: many relay rounds, queues and back-pressure, several shuffled batches."""
    monkeypatch.setattr(settings, "PSI_BATCH_IDS", 64)
    monkeypatch.setattr(settings, "PSI_WORK_CHUNK_IDS", 16)  # several pool tasks per batch
    record = run_job(
        psi_job(consortium, mode=mode), clients=consortium.clients(), store=consortium.store()
    )
    assert record.result["1:psi"]["count"] == len(SHARED)
    if mode == "alignment":
        bank = stored(consortium, "bank", "common")
        assert set(bank) == SHARED and stored(consortium, "telco", "common") == bank


@pytest.mark.parametrize("mode", ["alignment", "cardinality"])
def test_followers_much_larger_than_the_leader_do_not_stall_the_relay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """Followers hold their points until their set is closed: once the leader is done, rounds
    pass in which a follower only blinds its own ids and sends nothing. The coordinator must
    count that as progress (its ``own_ids`` grows), not as a stall."""
    monkeypatch.setattr(settings, "PSI_BATCH_IDS", 16)  # leader: 8 batches, followers: 25
    c = Consortium(tmp_path)
    sets = {"bank": UNIVERSE[:120], "bureau": UNIVERSE, "telco": UNIVERSE[::-1]}
    for party, ids in sets.items():
        csv = write_csv(tmp_path / f"{party}.csv", ids, label=party == "bank")
        c.add_silo(SiloSpec(party, csv, ["f1"], label="y" if party == "bank" else None))
    c.start_all()
    try:
        record = run_job(psi_job(c, mode=mode), clients=c.clients(), store=c.store())
        assert record.result["1:psi"]["count"] == 120
        if mode == "alignment":
            assert stored(c, "bureau", "common") == sorted(UNIVERSE[:120])
    finally:
        c.stop_all()
        for node in c.nodes.values():
            node.ctx.store.engine.dispose()


def test_a_dataset_changed_during_psi_is_refused_and_nothing_is_kept(
    consortium: Consortium, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = SiloClient.step

    def step(
        self: SiloClient, job_id: str, method: str, seq: int, payload: StepPayload, **kw: float
    ) -> StepPayload:
        if method == "psi.result" and self.party == "telco":
            engine = consortium.nodes["telco"].ctx.data.engine
            with engine.begin() as conn:
                conn.execute(text("UPDATE telco_data SET id = 'C-99999-x' WHERE id = 'C-00399-ß'"))
        return real(self, job_id, method, seq, payload, **kw)

    monkeypatch.setattr(SiloClient, "step", step)
    with pytest.raises(JobError, match="changed while PSI ran"):
        run_job(psi_job(consortium), clients=consortium.clients(), store=consortium.store())
    assert all(not n.ctx.store.list_alignments() for n in consortium.nodes.values())


@pytest.mark.postgres
@pytest.mark.parametrize("db_urls", ["postgresql"], indirect=True)
def test_a_linguistic_collation_still_stores_one_code_point_order(
    tmp_path: Path, db_urls: dict[str, str | None]
) -> None:
    """The bank's id column sorts by ICU rules ('a…' before 'B…'), the others' by code point
    ('B…' before 'a…'): PSI rows follow each database's order, and every party still stores the
    one code-point order (the bank sorts its ids in memory, the others stream them)."""
    universe = [f"{'aBcD'[i % 4]}{i:04d}" for i in range(240)]
    sets = {"bank": universe[:200], "bureau": universe[20:220], "telco": universe[40:240]}
    c = Consortium(tmp_path)
    for party, ids in sets.items():
        csv = write_csv(tmp_path / f"{party}.csv", ids, label=party == "bank")
        label = "y" if party == "bank" else None
        c.add_silo(SiloSpec(party, csv, ["f1"], label=label, db_url=db_urls[party]))
    engine = create_engine(str(db_urls["bank"]))
    with engine.begin() as conn:
        conn.execute(text('ALTER TABLE bank_data ALTER COLUMN id TYPE TEXT COLLATE "und-x-icu"'))
        ordered = conn.execute(text("SELECT id FROM bank_data ORDER BY id")).scalars().all()
    engine.dispose()
    assert ordered != sorted(ordered)  # the bank's database really orders ids differently
    c.start_all()
    try:
        record = run_job(psi_job(c), clients=c.clients(), store=c.store())
        assert record.state == "succeeded"
        bank = stored(c, "bank", "common")
        assert bank == sorted(set(universe[40:200]))
        assert stored(c, "bureau", "common") == bank == stored(c, "telco", "common")
    finally:
        c.stop_all()
        for node in c.nodes.values():
            node.ctx.store.engine.dispose()


def test_a_padding_silo_reveals_only_its_padded_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """telco pads its 300 ids to a multiple of 128: the coordinator and the leader see 384 (the
    leader's psi.end check and the follower's row bound still hold), and the intersection and
    the stored alignments are exactly those without padding. With batches of 64, no progress
    count the coordinator sees is 300 (the real ids are re-cut with the dummies)."""
    seen: dict[str, list[int]] = {}
    real = SiloClient.step

    def step(
        self: SiloClient, job_id: str, method: str, seq: int, payload: StepPayload, **kw: float
    ) -> StepPayload:
        reply = real(self, job_id, method, seq, payload, **kw)
        if method == "psi.pump":
            seen.setdefault(self.party, []).append(int(reply.meta["own_ids"]))
        return reply

    monkeypatch.setattr(SiloClient, "step", step)
    monkeypatch.setattr(settings, "PSI_BATCH_IDS", 64)  # real ids and dummies in several batches
    c = Consortium(tmp_path)
    for party, ids in SETS.items():
        csv = write_csv(tmp_path / f"{party}.csv", ids, label=party == "bank")
        policy = "psi_pad_to_multiple = 128\n" if party == "telco" else ""
        label = "y" if party == "bank" else None
        c.add_silo(SiloSpec(party, csv, ["f1"], label=label, policy=policy))
    c.start_all()
    try:
        record = run_job(psi_job(c), clients=c.clients(), store=c.store())
        assert {p: counts[-1] for p, counts in seen.items()} == {
            "bank": 300,
            "bureau": 300,
            "telco": 384,
        }
        assert set(seen["telco"]) <= {0, 64, 128, 192, 256, 320, 384}  # never the real 300
        assert 300 in seen["bureau"]  # an unpadded silo does show its size
        assert record.result["1:psi"]["count"] == len(SHARED)
        telco = stored(c, "telco", "common")
        assert telco == sorted(SHARED) == stored(c, "bank", "common")
    finally:
        c.stop_all()
        for node in c.nodes.values():
            node.ctx.store.engine.dispose()


def test_padding_adds_distinct_dummies_and_leaves_an_empty_set_empty(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fedsilo.protocols.psi.silo import PAD_PREFIX, _padded

    monkeypatch.setattr(settings, "PSI_BATCH_IDS", 4)
    chunks = list(_padded(iter([["a", "b", "c"], ["d", "e"]]), 8))
    flat = [i for chunk in chunks for i in chunk]
    assert flat[:5] == ["a", "b", "c", "d", "e"] and len(flat) == 8
    assert all(d.startswith(PAD_PREFIX) and len(d) == len(PAD_PREFIX) + 32 for d in flat[5:])
    assert len(set(flat)) == 8 and max(map(len, chunks)) <= 4
    assert [len(c) for c in chunks] == [4, 4]  # re-cut: a short batch would show the real size
    assert [len(c) for c in _padded(iter([["a"] * 3, ["b"] * 6]), 1)] == [4, 4, 1]
    assert [len(c) for c in _padded(iter([["a"] * 8]), 8)] == [4, 4]  # already a multiple
    assert list(_padded(iter([]), 8)) == []  # still refused as empty, not padded
