"""CKKS secure sums: exact integer and fixed-point round trips, key custody, hostile bytes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fedsilo.crypto import ckks
from fedsilo.errors import CryptoError, ProtocolError

CTX = ckks.make_context()
PUBLIC = ckks.load_context(ckks.public_context_bytes(CTX), require_secret=False)


def _sum(vectors: list[np.ndarray]) -> np.ndarray:
    length = len(vectors[0])
    parts = [ckks.encrypt_vector(CTX, v) for v in vectors]
    return ckks.decrypt_vector(CTX, ckks.sum_ciphertexts(PUBLIC, parts, length), length)


ints = st.integers(min_value=-(2**39), max_value=2**39)


@settings(max_examples=15, deadline=None)
@given(
    st.integers(min_value=1, max_value=9000).flatmap(
        lambda n: st.lists(arrays(np.int64, n, elements=ints), min_size=3, max_size=4)
    )
)
def test_integer_sums_are_exact(vectors):
    total = ckks.round_exact(_sum([v.astype(np.float64) for v in vectors]))
    assert np.array_equal(total, np.sum(vectors, axis=0))


@settings(max_examples=10, deadline=None)
@given(st.lists(arrays(np.float64, 50, elements=st.floats(-1e5, 1e5)), min_size=3, max_size=3))
def test_fixed_point_sums_are_exact_on_the_grid(vectors):
    encoded = [ckks.encode_fixed(v) for v in vectors]
    assert np.array_equal(ckks.decode_fixed(_sum(encoded)), np.sum(encoded, axis=0))


def test_chunking_uses_as_few_ciphertexts_as_fit():
    assert ckks.slot_count() == 4096
    assert len(ckks.encrypt_vector(CTX, np.zeros(4096))) == 1
    assert len(ckks.encrypt_vector(CTX, np.zeros(4097))) == 2


def test_too_large_or_noisy_sums_are_refused_not_misrounded():
    with pytest.raises(CryptoError, match="too large"):
        ckks.round_exact(np.array([float(ckks.EXACT_LIMIT) * 2]))
    with pytest.raises(CryptoError, match="off the fixed-point grid"):
        ckks.round_exact(np.array([1.4]))
    with pytest.raises(CryptoError):
        ckks.round_exact(np.array([np.nan]))


def test_key_custody():
    with pytest.raises(CryptoError):  # an aggregator never takes a secret key
        ckks.load_context(ckks.secret_context_bytes(CTX), require_secret=False)
    with pytest.raises(CryptoError):
        ckks.load_context(ckks.public_context_bytes(CTX), require_secret=True)
    with pytest.raises(CryptoError):
        ckks.decrypt_vector(PUBLIC, ckks.encrypt_vector(CTX, np.ones(3)), 3)
    with pytest.raises(CryptoError):
        ckks.secret_context_bytes(PUBLIC)


@pytest.mark.parametrize("blob", [b"", b"\x00" * 100, b"\xff" * 5000])
def test_hostile_bytes_are_protocol_errors(blob):
    with pytest.raises(ProtocolError):
        ckks.load_context(blob, require_secret=False)
    with pytest.raises(ProtocolError):
        ckks.sum_ciphertexts(PUBLIC, [[blob]] * 3, 10)


def test_truncated_ciphertext_and_wrong_shapes_refused():
    ct = ckks.encrypt_vector(CTX, np.ones(10))
    with pytest.raises(ProtocolError):
        ckks.sum_ciphertexts(PUBLIC, [ct, ct, [ct[0][:-7]]], 10)
    with pytest.raises(ProtocolError):  # a vector of another length
        ckks.sum_ciphertexts(PUBLIC, [ct, ct, ct], 11)
    with pytest.raises(ProtocolError):
        ckks.decrypt_vector(CTX, ct + ct, 10)
