"""Paillier: phe compatibility, secure defaults, the fast path and the packing proof."""

from __future__ import annotations

import gmpy2
import numpy as np
import phe
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedsilo import settings as fs_settings
from fedsilo.crypto import paillier
from fedsilo.crypto.paillier import (
    ObfuscatorTables,
    PublicKey,
    decrypt,
    decrypt_signed,
    encrypt_packed,
    generate_keypair,
    pack_ciphertexts,
    slot_bits,
    slots_per_ciphertext,
    unpack_slots,
)
from fedsilo.errors import CryptoError, PolicyError, ProtocolError
from fedsilo.message import pack_uints, unpack_uints
from fedsilo.ml.binning import fit_bins
from fedsilo.ml.secure_hist import (
    ObfuscatorStock,
    PackingSpec,
    decode_histogram,
    decrypt_many,
    encrypt_gradients,
    encrypted_histogram,
)
from fedsilo.ml.tree import HistLayout, plain_histogram


@pytest.fixture(scope="module")
def keys():
    return generate_keypair(512, insecure_min_bits=512)


@pytest.fixture(scope="module")
def tables(keys):
    return ObfuscatorTables.build(keys[1])


@pytest.fixture(scope="module")
def base(keys):
    return paillier.rerandomiser_base(keys[1])


def test_our_ciphertexts_open_with_phe_and_theirs_with_ours(keys, tables):
    pub, key = keys
    phe_pub, phe_priv = key.to_phe()
    values = [0, 1, 12345, int(pub.n) - 1, -7]
    for m, c in zip(values, encrypt_packed(key, tables, values), strict=True):
        assert phe_priv.raw_decrypt(int(c)) == m % int(pub.n)
        # and phe's own EncryptedNumber arithmetic works on our ciphertexts
        if 0 <= m < 10**6:
            enc = phe.EncryptedNumber(phe_pub, int(c), 0)
            assert phe_priv.decrypt(enc + 5) == m + 5
    for m in (0, 3, 2**200):
        assert decrypt(key, phe_pub.raw_encrypt(m)) == m


def test_fresh_randomness_and_signed_values(keys, tables):
    pub, key = keys
    a, b = encrypt_packed(key, tables, [-42, -42])
    assert a != b
    assert decrypt_signed(key, a) == -42
    assert decrypt_signed(key, a * b % pub.n2) == -84


def test_secure_defaults_refuse_small_keys():
    with pytest.raises(CryptoError):
        generate_keypair(1024)
    with pytest.raises(CryptoError):
        PublicKey.from_n((1 << 1023) + 1)
    assert PublicKey.from_n((1 << 1023) + 1, insecure_min_bits=1024).bits == 1024


def test_decrypt_refuses_out_of_range(keys):
    pub, key = keys
    with pytest.raises(CryptoError):
        decrypt(key, pub.n2 + 5)


def test_djn_exponent_is_twice_the_key_strength():
    assert paillier.djn_exponent_bits(2048) == 224
    assert paillier.djn_exponent_bits(3072) == 256
    assert paillier.djn_exponent_bits(512) == 224  # never below the floor


@settings(max_examples=300, deadline=None)
@given(
    precision=st.integers(8, 40),
    max_rows=st.integers(1, 1 << 22),
    key_bits=st.sampled_from([512, 1024, 2048, 3072]),
    data=st.data(),
)
def test_packing_never_overflows(precision, max_rows, key_bits, data):
    """The docstring's proof, checked on extreme and random slot values (plaintext level)."""
    w = slot_bits(precision, max_rows)
    try:
        k = slots_per_ciphertext(key_bits, w)
    except CryptoError:
        return
    bound = max_rows << precision
    pairs = data.draw(
        st.lists(
            st.tuples(
                st.one_of(st.just(bound), st.just(-bound), st.integers(-bound, bound)),
                st.one_of(st.just(bound), st.just(0), st.integers(0, bound)),
            ),
            min_size=1,
            max_size=k,
        )
    )
    n = (1 << (key_bits - 1)) + 1  # the smallest modulus of that size: the tightest case
    value = sum(((g << w) + h) << (2 * w * j) for j, (g, h) in enumerate(pairs))
    assert abs(value) < n // 2
    lifted = value % n
    lifted = lifted - n if lifted > n // 2 else lifted
    digits = unpack_slots(lifted, w, 2 * len(pairs))
    assert digits[0::2] == [h for _, h in pairs]
    assert digits[1::2] == [g for g, _ in pairs]


def test_unpack_detects_overflow():
    with pytest.raises(CryptoError):
        unpack_slots(1 << 200, 16, 4)


def test_packed_ciphertexts_decrypt_to_the_slots(keys, tables):
    pub, key = keys
    w = slot_bits(30, 1000)
    k = slots_per_ciphertext(pub.bits, w)
    rng = np.random.default_rng(0)
    pairs = [
        (int(rng.integers(-(1000 << 30), 1000 << 30)), int(rng.integers(0, 1000 << 30)))
        for _ in range(k)
    ]
    cts = encrypt_packed(key, tables, [(g << w) + h for g, h in pairs])
    packed = pack_ciphertexts(pub.n2, cts, 2 * w)
    digits = unpack_slots(decrypt_signed(key, packed), w, 2 * k)
    assert list(zip(digits[1::2], digits[0::2], strict=True)) == pairs


def test_encrypted_histogram_equals_plain_histogram(keys, base):
    """Passive-side sums (parallel, densest bin omitted, packed) decode to the exact sums."""
    pub, key = keys
    rng = np.random.default_rng(1)
    x = rng.normal(size=(600, 4))
    x[rng.random(x.shape) < 0.1] = np.nan
    x[:, 1] = np.round(x[:, 1])  # a few dense bins
    bm = fit_bins(x, max_bin=8)
    bins = bm.transform(x)
    layout = HistLayout.concat(bm.slots)
    bits = 30
    g = rng.integers(-(1 << bits), 1 << bits, size=600)
    h = rng.integers(0, 1 << (bits - 2), size=600)
    spec = PackingSpec.for_job(pub.bits, 600, bits)
    blob = encrypt_gradients(ObfuscatorStock(key), spec, g, h)
    cts = np.frombuffer(blob, np.uint8).reshape(600, -1)
    rows = np.sort(rng.choice(600, size=250, replace=False))
    mask = np.array([True, True, False, True])
    eg, eh = plain_histogram(bins, rows, g, h, layout)
    keep = np.repeat(mask, layout.slots)
    # feature by feature, all features jointly, and a grouping that includes a masked feature
    for groups in (None, [[0, 1, 2, 3]], [[1, 2], [0], [3]]):
        enc = encrypted_histogram(
            pub, spec, cts[rows], bins[rows], layout, mask, groups, rerandomise_base=base
        )
        (plain,) = decrypt_many(key, [enc.packed])
        gs, hs = decode_histogram(plain, enc, spec, layout, int(g[rows].sum()), int(h[rows].sum()))
        assert np.array_equal(gs[keep], eg[keep]) and np.array_equal(hs[keep], eh[keep])
        assert not gs[~keep].any()
        assert (enc.omitted[mask] >= 0).all()


def test_pack_uints_round_trip_of_ciphertexts(keys, tables):
    from fedsilo.message import pack_uints, unpack_uints

    pub, key = keys
    cts = encrypt_packed(key, tables, list(range(10)))
    back = unpack_uints(pack_uints(cts, pub.ciphertext_bytes), pub.ciphertext_bytes)
    assert [gmpy2.mpz(c) for c in cts] == back


def test_joint_cells_give_the_same_bin_products(keys, tables):
    """Summing rows through joint cells of several features equals feature-by-feature sums."""
    from fedsilo.message import pack_uints, unpack_uints
    from fedsilo.ml.secure_hist import _bin_products, feature_groups

    pub, key = keys
    rng = np.random.default_rng(7)
    bins = rng.integers(0, 3, size=(300, 4)).astype(np.uint8)
    bins[:, 1] = bins[:, 0]  # correlated coarse features: few joint cells
    layout = HistLayout((4, 4, 4, 4))
    present = np.ones(layout.n_slots, bool)
    present[[0, 5]] = False
    cts = encrypt_packed(key, tables, list(range(300)))
    blob = pack_uints(cts, pub.ciphertext_bytes)
    args = (int(pub.n2), blob, pub.ciphertext_bytes, bins, layout.ptr, present)
    singles = _bin_products(*args, [np.array([f]) for f in range(4)])
    joint = _bin_products(*args, [np.array([0, 1, 2]), np.array([3])])

    def as_dict(res):
        slots, packed = res
        return dict(zip(slots.tolist(), unpack_uints(packed, pub.ciphertext_bytes), strict=True))

    a, b = as_dict(singles), as_dict(joint)
    assert sorted(a) == sorted(b) == [s for s in range(16) if present[s] and s % 4 != 3]
    assert all(decrypt(key, a[s]) == decrypt(key, b[s]) for s in a)
    assert feature_groups(bins, np.array([4, 4, 4, 4]), rows_per_cell=16)[0] == [0, 1, 2]


def test_key_size_ceiling_refuses_peer_keys_and_jobs():
    top = fs_settings.PAILLIER_MAX_BITS
    with pytest.raises(ProtocolError, match=f"{top + 1} bits is above the ceiling of {top}"):
        PublicKey.from_n((1 << top) + 1, insecure_min_bits=512)
    with pytest.raises(PolicyError, match=f"{2 * top} bits"):
        generate_keypair(2 * top)  # refused before any prime is drawn
    assert PublicKey.from_n((1 << (top - 1)) + 1).bits == top


def test_rerandomise_keeps_the_plaintext_and_changes_the_ciphertext(keys, tables, base):
    pub, key = keys
    rt = paillier.rerandomiser_tables(pub, base)
    assert rt.digits * rt.window >= pub.bits + fs_settings.PAILLIER_RERANDOMISE_STAT_BITS
    (c,) = encrypt_packed(key, tables, [-12345])
    a, b = paillier.rerandomise(rt, [c, c])
    assert len({int(c), int(a), int(b)}) == 3
    assert decrypt_signed(key, a) == decrypt_signed(key, b) == -12345
    assert paillier.rerandomiser_tables(pub, base) is rt  # built once per process


def test_rerandomiser_base_from_a_peer_is_checked(keys, base):
    pub, key = keys
    assert paillier.check_rerandomiser_base(pub, int(base)) == base
    for bad in (0, 1, pub.n2, pub.n2 + 5, key.p * 7):
        with pytest.raises(ProtocolError):
            paillier.check_rerandomiser_base(pub, int(bad))


def test_label_holder_cannot_test_bin_membership_on_replies(keys, base):
    """Two replies for the same bins differ yet decode to the same sums; the label holder's
    product of its own ciphertexts over the true rows of each bin no longer equals the reply."""
    from fedsilo.ml.secure_hist import _bin_products

    pub, key = keys
    width, n = pub.ciphertext_bytes, 240
    rng = np.random.default_rng(11)
    bins = rng.integers(0, 4, size=(n, 5)).astype(np.uint8)
    layout = HistLayout((5,) * 5)
    g = rng.integers(-(1 << 30), 1 << 30, size=n)
    h = rng.integers(0, 1 << 28, size=n)
    spec = PackingSpec.for_job(pub.bits, n, 30)
    blob = encrypt_gradients(ObfuscatorStock(key), spec, g, h)
    cts = np.frombuffer(blob, np.uint8).reshape(n, -1)
    one, two = (
        encrypted_histogram(pub, spec, cts, bins, layout, rerandomise_base=base) for _ in range(2)
    )
    assert np.array_equal(one.present, two.present) and np.array_equal(one.omitted, two.omitted)
    replies, again = unpack_uints(one.packed, width), unpack_uints(two.packed, width)
    assert len(replies) > 1 and all(a != b for a, b in zip(replies, again, strict=True))
    totals = int(g.sum()), int(h.sum())
    decoded = [
        decode_histogram(plain, enc, spec, layout, *totals)
        for plain, enc in zip(decrypt_many(key, [one.packed, two.packed]), (one, two), strict=True)
    ]
    expected = plain_histogram(bins, np.arange(n), g, h, layout)
    for gs, hs in decoded:
        assert np.array_equal(gs, expected[0]) and np.array_equal(hs, expected[1])

    # the attack: the label holder multiplies its own ciphertexts over a candidate row set
    own = unpack_uints(blob, width)
    slot_of = bins.astype(np.int64) + layout.ptr[:-1]
    order, k = np.flatnonzero(one.present), spec.pairs_per_ciphertext

    def product(slot: int):
        acc = gmpy2.mpz(1)
        for i in np.flatnonzero((slot_of == slot).any(axis=1)).tolist():
            acc = acc * own[i] % pub.n2
        return acc

    # its candidate (the true rows of each bin) is exactly the passive's bare sum ...
    units = [np.array([f]) for f in range(5)]
    slots, prods = _bin_products(int(pub.n2), blob, width, bins, layout.ptr, one.present, units)
    bare = dict(zip(slots.tolist(), unpack_uints(prods, width), strict=True))
    assert all(bare[s] == product(s) for s in order.tolist())
    guesses = [
        pack_ciphertexts(
            pub.n2, [product(s) for s in order[i : i + k].tolist()], 2 * spec.slot_bits
        )
        for i in range(0, len(order), k)
    ]
    # ... and has the reply's plaintext, yet the equality test that used to confirm it fails
    assert [decrypt(key, c) for c in guesses] == [decrypt(key, c) for c in replies]
    assert all(guess != reply for guess, reply in zip(guesses, replies, strict=True))
    assert pack_uints(guesses, width) != one.packed


def test_vertical_lr_passive_refuses_an_oversized_key():
    from fedsilo.message import Message
    from fedsilo.ml.lr_common import LRConfig
    from fedsilo.protocols.lr import vertical as lr_vertical

    top = fs_settings.PAILLIER_MAX_BITS
    passive = lr_vertical.PassiveParty(
        np.random.default_rng(0).normal(size=(300, 2)),
        party="h",
        feature_names=["a", "b"],
        config=LRConfig(batch_size=100),
        passive_parties=["h"],
        insecure_min_key_bits=512,
    )
    huge = (1 << top) + 1
    msg = Message(lr_vertical.PUBLIC_KEY, blobs={"n": pack_uints([huge], (top + 8) // 8)})
    with pytest.raises(ProtocolError, match=f"{top + 1} bits"):
        passive.accept_public_key(msg)
    assert passive.key_bits == 0
