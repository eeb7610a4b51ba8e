"""CKKS (TenSEAL) for secure aggregation: the one home of contexts, ciphertext bytes and sums.

Horizontal protocols (federated XGBoost histograms, federated LR updates) add vectors that only the
silos may read. One silo makes a :func:`make_context` from the ``CKKS_*`` settings and shares the
secret context with its peers (sealed, see :mod:`fedsilo.crypto.sealing`); the coordinator gets
:func:`public_context_bytes`, which holds no secret key and no evaluation keys, because adding
ciphertexts needs neither. Every silo encrypts its vector with :func:`encrypt_vector`, the
coordinator adds them with :func:`sum_ciphertexts`, and every silo decrypts the same sum with
:func:`decrypt_vector`.

CKKS is approximate: a decrypted sum differs from the true sum by about 1e-8 absolute (scale
2**40) plus about 2**-50 of the vector's magnitude. :func:`encode_fixed` / :func:`decode_fixed`
(and :func:`round_exact` for vectors of integers) remove that noise: inputs are rounded to a
multiple of ``2**-frac_bits`` before encryption, so the true sum is on that grid and rounding the
decrypted sum recovers it *exactly* while the sum stays below ``EXACT_LIMIT`` grid steps (checked,
:class:`~fedsilo.errors.CryptoError` otherwise). Exact sums make every silo's result bit-identical
and independent of summation order, and no CKKS noise (which carries information about the secret
key) survives decryption.

Ciphertext bytes from a peer are untrusted: they are parsed by SEAL's own (non-executable) format
with length and slot-count checks here; parse failures become
:class:`~fedsilo.errors.ProtocolError`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tenseal as ts

from fedsilo import settings
from fedsilo.errors import CryptoError, PolicyError, ProtocolError

__all__ = [
    "EXACT_LIMIT",
    "FIXED_FRAC_BITS",
    "check_silo_count",
    "decode_fixed",
    "decrypt_vector",
    "encode_fixed",
    "encrypt_vector",
    "load_context",
    "make_context",
    "public_context_bytes",
    "round_exact",
    "secret_context_bytes",
    "slot_count",
    "sum_ciphertexts",
]

#: bits after the binary point of fixed-point values (2**-20 ~ 1e-6): CKKS noise on a sum of a few
#: fresh ciphertexts is ~2e-9 (max ~2e-8 measured), 200x below half a grid step (4.8e-7).
FIXED_FRAC_BITS: int = 20
#: bytes, ceilings for one serialised ciphertext / context accepted from a peer (settings).
_MAX_CIPHERTEXT_BYTES = settings.CKKS_MAX_CIPHERTEXT_BYTES
_MAX_CONTEXT_BYTES = settings.CKKS_MAX_CONTEXT_BYTES
#: largest magnitude (in grid steps) a decrypted sum may have and still be rounded exactly; see
#: :func:`round_exact` and ``settings.CKKS_EXACT_LIMIT``.
EXACT_LIMIT: int = settings.CKKS_EXACT_LIMIT


def check_silo_count(n_silos: int, *, protocol: str, summed: str) -> None:
    """Refuse a secure sum over fewer than ``MIN_SECURE_AGGREGATION_SILOS`` silos: with two, the
    sum minus one's own input is the other's (docs/leakage.md). ``summed`` names that input."""
    if n_silos < settings.MIN_SECURE_AGGREGATION_SILOS:
        raise PolicyError(
            f"{protocol} needs at least {settings.MIN_SECURE_AGGREGATION_SILOS} silos, got "
            f"{n_silos}: with two, each silo can subtract its own {summed} from the decrypted "
            "sum and read the other silo's"
        )


def slot_count() -> int:
    """Numbers one ciphertext carries: half the polynomial degree (4096 for 8192)."""
    return settings.CKKS_POLY_MODULUS_DEGREE // 2


def make_context() -> ts.Context:
    """A fresh CKKS context with a secret key, from the ``CKKS_*`` settings."""
    ctx = ts.context(
        ts.SCHEME_TYPE.CKKS,
        settings.CKKS_POLY_MODULUS_DEGREE,
        coeff_mod_bit_sizes=list(settings.CKKS_COEFF_MOD_BIT_SIZES),
    )
    ctx.global_scale = settings.CKKS_GLOBAL_SCALE
    return ctx


def public_context_bytes(ctx: ts.Context) -> bytes:
    """The context an aggregator needs to add ciphertexts: parameters and public key only."""
    return bytes(
        ctx.serialize(
            save_public_key=True,
            save_secret_key=False,
            save_galois_keys=False,
            save_relin_keys=False,
        )
    )


def secret_context_bytes(ctx: ts.Context) -> bytes:
    """The whole context including the secret key: only ever sent sealed to a peer silo."""
    if not ctx.has_secret_key():
        raise CryptoError("this CKKS context holds no secret key")
    return bytes(ctx.serialize(save_secret_key=True))


def load_context(data: bytes, *, require_secret: bool) -> ts.Context:
    """Parse a context from a peer and check it uses our parameters (and holds a key if needed)."""
    if not data or len(data) > _MAX_CONTEXT_BYTES:
        raise ProtocolError(f"CKKS context of {len(data)} bytes refused")
    try:
        ctx = ts.context_from(data)
    except (ValueError, RuntimeError, TypeError) as exc:
        raise ProtocolError(f"malformed CKKS context: {exc}") from None
    if ctx.global_scale != settings.CKKS_GLOBAL_SCALE:
        raise ProtocolError("CKKS context has a scale other than the configured one")
    if require_secret and not ctx.has_secret_key():
        raise CryptoError("CKKS context holds no secret key")
    if not require_secret and ctx.has_secret_key():
        raise CryptoError("refusing a CKKS context that carries a secret key")
    return ctx


def encrypt_vector(ctx: ts.Context, values: np.ndarray) -> list[bytes]:
    """Encrypt a 1-d float vector into ``ceil(len / slots)`` serialised ciphertexts."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    if not np.all(np.isfinite(flat)):
        raise CryptoError("refusing to encrypt a non-finite value")
    step = slot_count()
    return [
        bytes(ts.ckks_vector(ctx, flat[i : i + step].tolist()).serialize())
        for i in range(0, max(len(flat), 1), step)
    ]


def _parse(ctx: ts.Context, blob: bytes, size: int) -> ts.CKKSVector:
    if not blob or len(blob) > _MAX_CIPHERTEXT_BYTES:
        raise ProtocolError(f"CKKS ciphertext of {len(blob)} bytes refused")
    try:
        vec = ts.ckks_vector_from(ctx, blob)
    except (ValueError, RuntimeError, TypeError) as exc:
        raise ProtocolError(f"malformed CKKS ciphertext: {exc}") from None
    if vec.size() != size:
        raise ProtocolError(f"CKKS ciphertext holds {vec.size()} values, expected {size}")
    return vec


def _chunk_sizes(length: int) -> list[int]:
    step = slot_count()
    return [min(step, length - i) for i in range(0, max(length, 1), step)] if length else [0]


def sum_ciphertexts(
    ctx: ts.Context, contributions: Sequence[Sequence[bytes]], length: int
) -> list[bytes]:
    """Add the parties' encrypted vectors slot-wise; needs no secret key.

    ``contributions[p]`` is party ``p``'s list of ciphertexts for a vector of ``length`` values,
    as :func:`encrypt_vector` made it. Refuses lists of the wrong shape.
    """
    sizes = _chunk_sizes(length)
    if not contributions or any(len(c) != len(sizes) for c in contributions):
        raise ProtocolError(f"expected {len(sizes)} ciphertexts from every party")
    out: list[bytes] = []
    for i, size in enumerate(sizes):
        total = _parse(ctx, contributions[0][i], size)
        for party in contributions[1:]:
            total += _parse(ctx, party[i], size)
        out.append(bytes(total.serialize()))
    return out


def decrypt_vector(ctx: ts.Context, ciphertexts: Sequence[bytes], length: int) -> np.ndarray:
    """Decrypt ciphertexts of a ``length``-value vector (the context must hold the secret key)."""
    sizes = _chunk_sizes(length)
    if len(ciphertexts) != len(sizes):
        raise ProtocolError(f"expected {len(sizes)} ciphertexts, got {len(ciphertexts)}")
    if not ctx.has_secret_key():
        raise CryptoError("this CKKS context holds no secret key")
    parts = [
        np.asarray(_parse(ctx, c, s).decrypt(), dtype=np.float64)
        for c, s in zip(ciphertexts, sizes, strict=True)
    ]
    return np.concatenate(parts)[:length] if parts else np.zeros(0)


def encode_fixed(values: np.ndarray, frac_bits: int = FIXED_FRAC_BITS) -> np.ndarray:
    """Round values to the ``2**-frac_bits`` grid, so sums of them can be recovered exactly."""
    scale = float(2**frac_bits)
    return np.round(np.asarray(values, dtype=np.float64) * scale) / scale


def decode_fixed(decrypted: np.ndarray, frac_bits: int = FIXED_FRAC_BITS) -> np.ndarray:
    """Snap a decrypted sum of :func:`encode_fixed` values back to the grid, exactly.

    The noise must be below a quarter grid step (it is ~1e-3 of one with the default settings);
    anything larger means mismatched keys, a tampered ciphertext, or an input off the grid.
    Sums must stay below ``EXACT_LIMIT`` grid steps (:func:`round_exact`).
    """
    scale = float(2**frac_bits)
    return round_exact(np.asarray(decrypted, dtype=np.float64) * scale) / scale


def round_exact(decrypted: np.ndarray) -> np.ndarray:
    """Round a decrypted sum of integers to those integers exactly (``int64``).

    CKKS error is ~2e-8 absolute plus ~2**-50 of the vector's magnitude (double-precision
    decoding): measured 0.002 at 1e12 and 0.25 at 1e14. Below ``EXACT_LIMIT`` it stays under
    0.02, so rounding is exact; larger sums, or an error above a quarter, raise
    :class:`~fedsilo.errors.CryptoError` instead of returning a wrong integer.
    """
    values = np.asarray(decrypted, dtype=np.float64)
    if values.size == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.all(np.isfinite(values)) or float(np.max(np.abs(values))) > EXACT_LIMIT:
        raise CryptoError("CKKS sum too large to decode exactly")
    snapped = np.round(values)
    if float(np.max(np.abs(values - snapped))) > 0.25:
        raise CryptoError("CKKS sum is off the fixed-point grid: noise too large or tampered")
    return snapped.astype(np.int64)
