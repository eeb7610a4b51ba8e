"""PSI as pure code: curve known answers, hostile inputs, and whole protocols run in-process."""

from __future__ import annotations

import hashlib
import random
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from fedsilo import settings
from fedsilo.errors import CryptoError, DataError, PolicyError, ProtocolError
from fedsilo.message import Message, decode, encode
from fedsilo.psi import Follower, Leader, new_shuffle_seed, read_seed, seed_message
from fedsilo.psi import _x25519 as x
from fedsilo.psi._follower import _gather
from fedsilo.psi._hash_to_curve import P, expand_message_xmd, field_hasher, map_to_curve
from fedsilo.psi._ids import pack_ids
from fedsilo.psi._match import (
    DuplicateValues,
    has_duplicates,
    match,
    seeded_permutation,
    value_order,
)

CTX = b"job-test/salt-1"

# RFC 7748 section 5.2, first test vector.
RFC_SCALAR = bytes.fromhex("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4")
RFC_U = bytes.fromhex("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c")
RFC_OUT = bytes.fromhex("c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552")
# RFC 7748 section 5.2, second test vector: its input u lies on the twist, not on Curve25519.
RFC_TWIST_U = bytes.fromhex("e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493")
LOW_ORDER = [
    bytes(32),
    (1).to_bytes(32, "little"),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
]


def pts(*raw: bytes) -> np.ndarray:
    return x.points_array(b"".join(raw))


# --- curve ------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["openssl", "libsodium"])
def test_rfc7748_known_answer(backend: str) -> None:
    assert x.blind(RFC_SCALAR, pts(RFC_U), backend).tobytes() == RFC_OUT


def test_backends_agree_and_blinding_commutes() -> None:
    blob, ends = pack_ids([f"id-{i}" for i in range(64)])
    points = x.hash_to_points(blob, ends, CTX)
    a, b = x.new_secret(), x.new_secret()
    ab = x.blind(b, x.blind(a, points, "openssl"), "libsodium")
    ba = x.blind(a, x.blind(b, points, "libsodium"), "openssl")
    assert np.array_equal(ab, ba)
    assert not np.array_equal(x.blind(a, points), points)


# RFC 9380 appendix J.4.2, suite curve25519_XMD:SHA-512_ELL2_NU_: (msg, u[0], Q.x), big-endian.
RFC9380_DST = b"QUUX-V01-CS02-with-curve25519_XMD:SHA-512_ELL2_NU_"
RFC9380_NU = [
    (
        b"",
        "608d892b641f0328523802a6603427c26e55e6f27e71a91a478148d45b5093cd",
        "51125222da5e763d97f3c10fcc92ea6860b9ccbbd2eb1285728f566721c1e65b",
    ),
    (
        b"abc",
        "46f5b22494bfeaa7f232cc8d054be68561af50230234d7d1d63d1d9abeca8da5",
        "7d56d1e08cb0ccb92baf069c18c49bb5a0dcd927eff8dcf75ca921ef7f3e6eeb",
    ),
    (
        b"abcdef0123456789",
        "235fe40c443766ce7e18111c33862d66c3b33267efa50d50f9e8e5d252a40aaa",
        "3fbe66b9c9883d79e8407150e7c2a1c8680bee496c62fabe4619a72b3cabe90f",
    ),
    (
        b"q128_" + b"q" * 128,
        "001e92a544463bda9bd04ddbe3d6eed248f82de32f522669efc5ddce95f46f5b",
        "227e0bb89de700385d19ec40e857db6e6a3e634b1c32962f370d26f84ff19683",
    ),
]


@pytest.mark.parametrize("msg, u0, qx", RFC9380_NU)
def test_rfc9380_elligator2_known_answers(msg: bytes, u0: str, qx: str) -> None:
    r = field_hasher(RFC9380_DST)(msg)
    assert r == int.from_bytes(expand_message_xmd(msg, RFC9380_DST, 48), "big") % P
    assert f"{r:064x}" == u0
    assert f"{map_to_curve(r):064x}" == qx


def test_rfc9380_expand_message_xmd_sha512() -> None:
    # RFC 9380 appendix K.3 (DST "QUUX-V01-CS02-with-expander"): one block, and four blocks
    dst = b"QUUX-V01-CS02-with-expander"
    assert expand_message_xmd(b"abc", dst, 0x20).hex() == (
        "0eeda81f69376c80c0f8986496f22f21124cb3c562cf1dc608d2c13005553b0f"
    )
    four_blocks = expand_message_xmd(b"", dst, 0x80).hex()
    assert four_blocks.startswith(
        "0687ce02eba5eb3faf1c3c539d1f04babd3c0f420edae244eeb2253b6c6d6865"
    )
    assert four_blocks.endswith("8a03da6c942b2e12c14e88dbde3b0ba619d6214f47212b628f3e1b537b66efcf")


def on_curve(point: bytes) -> bool:
    """The curve equation by Euler's criterion, in plain Python: v^2 = u^3 + A u^2 + u solvable."""
    u = int.from_bytes(point, "little")
    return u < P and pow((u**3 + 486662 * u**2 + u) % P, (P - 1) // 2, P) in (0, 1)


def test_hash_to_point_known_answer_and_domain_separation() -> None:
    blob, ends = pack_ids(["alice", "bøb"])
    got = x.hash_to_points(blob, ends, CTX)
    assert x.DST == b"fedsilo/psi/v2/curve25519_XMD:SHA-512_ELL2_NU_"
    msg = struct.pack(">I", len(CTX)) + CTX + "bøb".encode()
    r = int.from_bytes(expand_message_xmd(msg, x.DST, 48), "big") % P
    assert got[1].tobytes() == map_to_curve(r).to_bytes(32, "little")
    assert all(on_curve(p.tobytes()) for p in got)
    other = x.hash_to_points(blob, ends, b"another job")
    assert not (got == other).all(axis=1).any()


def test_no_hashed_or_blinded_point_is_on_the_twist() -> None:
    ids = [f"cust-{i}" for i in range(3000)]
    blob, ends = pack_ids(ids)
    hashed = x.hash_to_points(blob, ends, CTX)
    blinded = x.hash_and_blind(x.new_secret(), ids, CTX)
    again = x.blind(x.new_secret(), blinded)
    for points in (hashed, blinded, again):
        assert all(on_curve(p.tobytes()) for p in points)
    assert len({p.tobytes() for p in hashed}) == len(ids)  # deterministic, distinct per id
    assert np.array_equal(hashed, x.hash_to_points(blob, ends, CTX))
    # v1 took 32 hash bytes as u: about half landed on the twist, so the check above can fail
    v1 = [hashlib.sha512(i.encode()).digest()[:31] + b"\x00" for i in ids]
    assert 0.4 < sum(map(on_curve, v1)) / len(v1) < 0.6


def test_hash_and_blind_equals_hash_then_blind() -> None:
    blob, ends = pack_ids(["a", "bb", "ccc"])
    secret = x.new_secret()
    assert np.array_equal(
        x.hash_and_blind(secret, ["a", "bb", "ccc"], CTX),
        x.blind(secret, x.hash_to_points(blob, ends, CTX)),
    )


def test_parallel_chunks_match_inline(monkeypatch: pytest.MonkeyPatch) -> None:
    ids = [f"row{i}" for i in range(300)]
    secret = x.new_secret()
    inline = x.hash_and_blind(secret, ids, CTX)
    monkeypatch.setattr(settings, "PSI_WORK_CHUNK_IDS", 64)  # 5 tasks in the process pool
    assert np.array_equal(x.hash_and_blind(secret, ids, CTX), inline)
    halves = np.concatenate([x.blind(secret, inline[:200]), x.blind(secret, inline[200:])])
    assert np.array_equal(x.blind(secret, inline), halves)
    with pytest.raises(DataError, match="row 1140 is empty"):  # raised in a worker, row kept
        x.hash_and_blind(secret, ids[:200] + [""] + ids[200:], CTX, first_row=940)


@pytest.mark.parametrize("point", LOW_ORDER)
@pytest.mark.parametrize("backend", ["openssl", "libsodium"])
def test_low_order_points_from_a_peer_are_refused(point: bytes, backend: str) -> None:
    with pytest.raises(ProtocolError, match="low-order"):
        x.blind(x.new_secret(), pts(RFC_U, point), backend)


NON_CANONICAL = (9 + P).to_bytes(32, "little")  # u = 9 written as 9 + p
HIGH_BIT = RFC_U[:31] + bytes([RFC_U[31] | 0x80])  # X25519 would ignore bit 255; we refuse it


@pytest.mark.parametrize("point", [RFC_TWIST_U, NON_CANONICAL, HIGH_BIT])
@pytest.mark.parametrize("backend", ["openssl", "libsodium"])
def test_a_peers_point_off_the_curve_is_refused(point: bytes, backend: str) -> None:
    assert not on_curve(point)
    with pytest.raises(ProtocolError, match="not on Curve25519"):
        x.blind(x.new_secret(), pts(RFC_U, point), backend)


def test_twist_points_are_refused_in_the_workers_and_by_both_roles(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(settings, "PSI_WORK_CHUNK_IDS", 64)  # 5 tasks in the process pool
    good = x.hash_and_blind(x.new_secret(), [f"id{i}" for i in range(300)], CTX)
    bad = good.copy()
    bad[250] = np.frombuffer(RFC_TWIST_U, np.uint8)
    assert x.blind(x.new_secret(), good).shape == (300, 32)
    with pytest.raises(ProtocolError, match="not on Curve25519"):
        x.blind(x.new_secret(), bad)
    msg = Message("psi.blinded", meta={"offset": 0}, arrays={"points": bad})
    with pytest.raises(ProtocolError, match="not on Curve25519"):
        Leader(context=CTX, followers=["f"]).on_follower("f", msg)
    with pytest.raises(ProtocolError, match="not on Curve25519"):
        Follower(context=CTX).on_leader(msg)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((3, 31), np.uint8),
        np.zeros((3, 32), np.int16),
        np.zeros(96, np.uint8),
        np.zeros((2, 32), "S1"),
    ],
)
def test_malformed_points_are_refused(bad: np.ndarray) -> None:
    with pytest.raises(ProtocolError):
        x.blind(x.new_secret(), bad)


def test_secret_of_wrong_length_is_refused() -> None:
    with pytest.raises(CryptoError):
        x.blind(b"short", pts(RFC_U))


# --- ids --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ids, what",
    [
        (["a", None], "NoneType"),
        (["a", 7], "int"),
        (["a", b"bytes"], "bytes"),
        (["a", ""], "empty"),
        (["a", "\ud800"], "Unicode"),
        (["a", "x" * (settings.PSI_MAX_ID_BYTES + 1)], "longer"),
    ],
)
def test_bad_ids_are_refused_with_their_row(ids: list[object], what: str) -> None:
    with pytest.raises(DataError, match=f"row 11 .*{what}|{what}.*") as err:
        pack_ids(ids, first_row=10)
    assert "row 11" in str(err.value)


# --- whole protocol, in process, relayed as bytes --------------------------------------------


class Relay:
    """The coordinator's part: move encoded messages between parties and keep every byte."""

    def __init__(self) -> None:
        self.seen: list[bytes] = []

    def __call__(self, msg: Message) -> Message:
        raw = encode(msg)
        self.seen.append(raw)
        return decode(raw)

    @property
    def nbytes(self) -> int:
        return sum(map(len, self.seen))


def batches(ids: list[str], size: int) -> list[list[str]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def run_psi(
    leader_ids: list[str],
    follower_ids: dict[str, list[str]],
    *,
    reveal_to: tuple[str, ...] = (),
    cardinality_only: bool = False,
    batch: int = 7,
    follower_batch: int | None = None,
    mins: dict[str, int] | None = None,
    relay: Relay | None = None,
    to_leader: Relay | None = None,
    secrets: dict[str, bytes] | None = None,
) -> tuple[object, dict[str, object]]:
    """Drive a leader and followers batch by batch exactly as the coordinator will.

    ``to_leader`` (default: ``relay``) carries everything the leader receives; ``secrets`` fixes
    parties' secrets (and ``"seed"``, the followers' shuffle seed) so that two runs can be
    compared byte for byte.
    """
    relay = relay or Relay()
    to_leader = to_leader or relay
    mins, secrets = mins or {}, secrets or {}
    seed = (secrets.get("seed") or new_shuffle_seed()) if cardinality_only else None
    leader = Leader(
        context=CTX,
        followers=list(follower_ids),
        cardinality_only=cardinality_only,
        reveal_to=reveal_to,
        min_intersection=mins.get("leader", 1),
        secret=secrets.get("leader"),
    )
    followers = {
        name: Follower(
            context=CTX,
            cardinality_only=cardinality_only,
            shuffle_seed=read_seed(relay(seed_message(seed))) if seed else None,
            min_intersection=mins.get(name, 1),
            secret=secrets.get(name),
        )
        for name in follower_ids
    }
    for name, ids in follower_ids.items():
        for b in batches(ids, follower_batch or batch):
            followers[name].blind_own(b)
        for msg in followers[name].close_own():
            leader.on_follower(name, to_leader(msg))
    own = [leader.blind_own(b) for b in batches(leader_ids, batch)] + [leader.close_own()]
    for msg in own:
        for name, f in followers.items():
            for back in f.on_leader(relay(msg)):
                leader.on_follower(name, to_leader(back))
    result = leader.finish()
    return result, {n: f.on_result(relay(result.outbox[n])) for n, f in followers.items()}


def make_sets(seed: int, n: int = 60) -> tuple[list[str], dict[str, list[str]], set[str]]:
    rng = random.Random(seed)
    universe = [f"cust-{i:05d}-é" for i in range(3 * n)]
    leader = rng.sample(universe, n)
    f1 = rng.sample(universe, n)
    f2 = rng.sample(universe, n + 13)
    return leader, {"f1": f1, "f2": f2}, set(leader) & set(f1) & set(f2)


def test_three_parties_align_exactly_like_a_plaintext_intersection() -> None:
    leader_ids, fol, want = make_sets(1)
    relay = Relay()
    res, out = run_psi(leader_ids, fol, reveal_to=("f1",), relay=relay)
    assert res.count == len(want) > 0
    aligned = [leader_ids[r] for r in res.rows]
    assert set(aligned) == want
    assert [fol["f1"][r] for r in out["f1"].rows] == aligned  # same order at both
    assert out["f2"].rows is None and out["f2"].count == len(want)
    assert aligned != sorted(aligned)  # the agreed order is not the id order
    for raw in relay.seen:  # the relay never carries an id or its unblinded hash
        for i in leader_ids[:20]:
            assert i.encode() not in raw
        blob, ends = pack_ids(leader_ids[:20])
        for h in x.hash_to_points(blob, ends, CTX):
            assert h.tobytes()[:16] not in raw


def test_two_parties_all_shared_and_none_shared() -> None:
    ids = [f"x{i}" for i in range(30)]
    res, out = run_psi(ids, {"f": list(reversed(ids))}, reveal_to=("f",))
    assert res.count == 30 and sorted(ids[r] for r in res.rows) == sorted(ids)
    assert [ids[::-1][r] for r in out["f"].rows] == [ids[r] for r in res.rows]
    res, _ = run_psi(ids, {"f": [f"y{i}" for i in range(30)]}, mins={"leader": 0, "f": 0})
    assert res.count == 0


@given(st.integers(0, 10_000), st.integers(1, 9))
@hsettings(max_examples=15, deadline=None)
def test_property_any_batching_gives_the_plaintext_intersection(seed: int, batch: int) -> None:
    leader_ids, fol, want = make_sets(seed, n=25)
    res, _ = run_psi(leader_ids, fol, batch=batch, mins={"leader": 0, "f1": 0, "f2": 0})
    assert {leader_ids[r] for r in res.rows} == want


@pytest.mark.parametrize("cardinality_only", [False, True])
def test_the_leaders_view_is_the_same_whatever_order_the_follower_ids_are_in(
    cardinality_only: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 4 of issue 12: with fixed secrets, every byte the leader receives from a follower is
    the same for any row order and batching of the follower's ids, padding dummies included."""
    monkeypatch.setattr(settings, "PSI_BATCH_IDS", 16)  # several psi.blinded messages
    leader_ids, fol, _ = make_sets(5)
    dummies = [f"\x00fedsilo-psi-pad:{i:032x}" for i in range(11)]
    ids = sorted(fol["f1"]) + dummies  # v1's leaky layout: id order, dummies last
    shuffled = ids[:]
    random.Random(5).shuffle(shuffled)
    layouts = [(ids, 7), (ids[::-1], 3), (shuffled, 60)]
    secrets = {"leader": x.new_secret(), "f": x.new_secret(), "seed": new_shuffle_seed()}
    views = []
    for order, fbatch in layouts:
        view = Relay()
        res, out = run_psi(
            leader_ids,
            {"f": order},
            reveal_to=() if cardinality_only else ("f",),
            cardinality_only=cardinality_only,
            follower_batch=fbatch,
            to_leader=view,
            secrets=secrets,
        )
        views.append(view.seen)
        assert res.count == len(set(leader_ids) & set(fol["f1"]))
        if not cardinality_only:  # the follower still maps positions back to its own rows
            assert [order[r] for r in out["f"].rows] == [leader_ids[r] for r in res.rows]
    assert len(views[0]) > 3 and views[0] == views[1] == views[2]
    blinded = [decode(raw) for raw in views[0] if decode(raw).kind == "psi.blinded"]
    heads = np.concatenate([m.array("points")[:, :8] for m in blinded]).view(np.uint64).ravel()
    assert len(heads) == len(ids) and (heads[1:] > heads[:-1]).all()  # sent sorted by value


def test_cardinality_mode_reveals_only_the_count() -> None:
    leader_ids, fol, want = make_sets(2)
    res, out = run_psi(leader_ids, fol, cardinality_only=True)
    assert res.count == len(want) and res.rows is None
    assert all(o.count == len(want) and o.rows is None for o in out.values())
    assert set(res.outbox["f1"].arrays) == set()


def test_seeded_permutation_is_shared_and_a_permutation() -> None:
    seed = new_shuffle_seed()
    p = seeded_permutation(1000, seed)
    assert np.array_equal(p, seeded_permutation(1000, seed))
    assert np.array_equal(np.sort(p), np.arange(1000))
    assert not np.array_equal(p, seeded_permutation(1000, new_shuffle_seed()))


@hsettings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), max_size=12),
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), max_size=12),
)
def test_match_is_exact_even_when_first_halves_collide(
    a: list[tuple[int, int]], b: list[tuple[int, int]]
) -> None:
    # tiny value ranges force rows that share their first uint64 but differ in the second,
    # the case the fast one-key sort hands to the exact two-key sort
    fa, fb = (np.array(v, dtype=np.uint64).reshape(-1, 2) for v in (a, b))
    assert has_duplicates(fa[:, 0], fa[:, 1]) == (len(set(a)) < len(a))
    if len(set(a)) < len(a) or len(set(b)) < len(b):
        with pytest.raises(DuplicateValues) as err:
            match([fa, fb], len(fa))
        assert err.value.side == (0 if len(set(a)) < len(a) else 1)
        return
    parts = [fa[:1], fa[1:], fb]  # sets arrive in parts, taken (and let go) one by one
    ia, ib = match(parts, len(fa))
    assert parts == []
    want = sorted((i, b.index(v)) for i, v in enumerate(a) if v in b)
    assert list(zip(ia.tolist(), ib.tolist(), strict=True)) == want


@hsettings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=14),
    st.integers(1, 5),
    st.randoms(use_true_random=False),
)
def test_value_order_depends_on_the_set_only_and_gathers_exactly(
    rows: list[tuple[int, int]], part_size: int, rnd: random.Random
) -> None:
    # tiny values force rows that share their first uint64, the case the exact sort handles
    def as_points(values: list[tuple[int, int]]) -> np.ndarray:
        words = np.array([[a, b, 7, 7] for a, b in values], dtype=np.uint64).reshape(-1, 4)
        return words.view(np.uint8).reshape(-1, 32)

    def split(points: np.ndarray) -> list[np.ndarray]:
        return [points[i : i + part_size] for i in range(0, len(points), part_size)]

    if len(set(rows)) < len(rows):
        with pytest.raises(DuplicateValues):
            value_order(split(as_points(rows)))
        return
    shuffled = rows[:]
    rnd.shuffle(shuffled)
    sent = []
    for values in (rows, shuffled):
        parts = split(as_points(values))
        order = value_order(parts)
        starts = np.cumsum([0] + [len(p) for p in parts])
        sent.append(_gather(parts, starts, order).tobytes())
        assert [values[i] for i in order.tolist()] == sorted(rows)
    assert sent[0] == sent[1]


# --- refusals -----------------------------------------------------------------------------------


def test_duplicate_ids_at_a_follower_are_refused_before_anything_is_learned() -> None:
    with pytest.raises(DataError, match="duplicate"):
        run_psi(["a", "b"], {"f": ["a", "c", "a"]})


def test_duplicate_ids_at_the_leader_are_refused() -> None:
    with pytest.raises(DataError, match="duplicate"):
        run_psi(["a", "b", "a"], {"f": ["a", "c"]})


def test_duplicates_in_cardinality_mode_are_refused() -> None:
    with pytest.raises(DataError, match="duplicate"):
        run_psi(["a", "b"], {"f": ["c", "c"]}, cardinality_only=True)


def test_empty_sets_are_refused() -> None:
    with pytest.raises(DataError, match="no ids"):
        run_psi(["a"], {"f": []})
    with pytest.raises(DataError, match="no ids"):
        run_psi([], {"f": ["a"]})


@pytest.mark.parametrize("who", ["leader", "f1", "f2"])
def test_an_intersection_below_any_partys_minimum_is_refused(who: str) -> None:
    leader_ids, fol, want = make_sets(3)
    mins = {"leader": 1, "f1": 1, "f2": 1, who: len(want) + 1}
    with pytest.raises(PolicyError, match=f"minimum of {len(want) + 1}"):
        run_psi(leader_ids, fol, mins=mins)


def test_a_follower_checks_its_own_minimum_on_the_result() -> None:
    f = Follower(context=CTX, min_intersection=5)
    f.blind_own(["a", "b"])
    f.close_own()
    with pytest.raises(PolicyError):
        f.on_result(Message("psi.cardinality", meta={"count": 4}))


def test_out_of_order_and_foreign_messages_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "PSI_BATCH_IDS", 2)
    leader = Leader(context=CTX, followers=["f"])
    f = Follower(context=CTX)
    f.blind_own(["a", "b", "c"])
    first, second, _end = f.close_own()
    with pytest.raises(ProtocolError, match="out of order"):
        leader.on_follower("f", second)
    with pytest.raises(ProtocolError, match="not a follower"):
        leader.on_follower("mallory", first)
    with pytest.raises(ProtocolError, match="unexpected"):
        leader.on_follower("f", Message("psi.alignment"))
    with pytest.raises(ProtocolError, match="incomplete|not closed"):
        leader.finish()
    with pytest.raises(ProtocolError, match="bad 'offset'"):
        leader.on_follower("f", Message("psi.blinded", meta={"offset": "0"}, arrays=first.arrays))


def test_a_forged_alignment_is_refused() -> None:
    f = Follower(context=CTX)
    f.blind_own(["a", "b"])
    with pytest.raises(ProtocolError, match="before"):  # nothing sent yet: no alignment
        f.on_result(Message("psi.alignment", meta={"count": 1}, arrays={"rows": np.zeros(1, "u4")}))
    list(f.close_own())
    for rows in (np.array([0, 5], np.uint32), np.array([1, 1], np.uint32), np.array([-1], np.int8)):
        with pytest.raises(ProtocolError):
            f.on_result(Message("psi.alignment", meta={"count": len(rows)}, arrays={"rows": rows}))


def test_exported_names_are_the_ones_we_mean() -> None:
    import fedsilo.psi

    assert set(fedsilo.psi.__all__) == {
        "ALIGNMENT",
        "BLINDED",
        "CARDINALITY",
        "DOUBLE",
        "END",
        "SHUFFLE_SEED",
        "Follower",
        "FollowerResult",
        "Leader",
        "LeaderResult",
        "PackedIds",
        "Pump",
        "new_shuffle_seed",
        "pack_ids",
        "read_seed",
        "seed_message",
    }
    assert all(hasattr(fedsilo.psi, name) for name in fedsilo.psi.__all__)


def test_a_follower_refuses_a_second_end_or_batches_after_it() -> None:
    f = Follower(context=CTX, cardinality_only=True, shuffle_seed=new_shuffle_seed())
    leader = Leader(context=CTX, followers=["f"])
    batch = leader.blind_own(["a", "b"])
    end = leader.close_own()
    f.on_leader(batch)
    assert len(f.on_leader(end)) == 1
    with pytest.raises(ProtocolError, match="twice"):
        f.on_leader(end)
    with pytest.raises(ProtocolError, match="offset"):
        f.on_leader(batch)


@pytest.mark.parametrize("cardinality_only", [False, True])
def test_pumps_in_relay_rounds_keep_queues_short(cardinality_only: bool) -> None:
    from fedsilo.psi import Pump

    leader_ids, fol, want = make_sets(4, n=70)
    relay, followers = Relay(), list(fol)
    seed = new_shuffle_seed() if cardinality_only else None
    lead = Leader(
        context=CTX,
        followers=followers,
        reveal_to=followers if not seed else (),
        cardinality_only=cardinality_only,
        min_intersection=1,
    )
    pumps = {"L": Pump(lead, iter(batches(leader_ids, 8)), leader="L", followers=followers)}
    for name, ids in fol.items():
        f = Follower(
            context=CTX, cardinality_only=cardinality_only, shuffle_seed=seed, min_intersection=1
        )
        pumps[name] = Pump(f, iter(batches(ids, 8)), leader="L", followers=followers)
    inflight: dict[str, dict[str, Message]] = {p: {} for p in pumps}
    for _ in range(200):
        outs = {p: pump.round(inflight[p]) for p, pump in pumps.items()}
        assert all(len(q) <= 3 for pump in pumps.values() for q in pump._queues.values())
        inflight = {p: {} for p in pumps}
        for sender, out in outs.items():
            for recipient, msg in out.items():
                inflight[recipient][sender] = relay(msg)
        if all(p.idle for p in pumps.values()) and not any(inflight.values()):
            break
    result = lead.finish()
    assert result.count == len(want)
    if not cardinality_only:
        assert {leader_ids[r] for r in result.rows} == want


def test_every_psi_message_kind_is_documented_with_what_it_reveals() -> None:
    from pathlib import Path

    from fedsilo.leakage import kinds

    page = (Path(__file__).resolve().parents[3] / "docs" / "leakage.md").read_text()
    ours = [k.kind for k in kinds() if k.protocol == "psi"]
    assert len(ours) == 6
    assert [k for k in ours if f"`{k}`" not in page] == []
