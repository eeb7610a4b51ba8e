"""Vertical LR's ciphertext arithmetic: encrypted residuals times a plaintext feature matrix.

Keys, encryption and decryption are :mod:`fedsilo.crypto.paillier`'s; this module holds only what
LR adds on top, as top-level functions the process pool can run:

* :func:`encrypt_residuals` (label holder): fixed-point residuals, encrypted with CRT +
  fixed-base obfuscators computed ahead in the pool (SecureBoost's ``ObfuscatorStock``).
* :func:`encrypted_gradient` (passive party): ``[G_j] = Π_i [ρ_i]^(X_ij)`` for every feature
  ``j`` of the batch, i.e. ``G = X^T ρ`` under encryption. Exponents are the party's
  fixed-point features; negative ones go to a second product that is inverted once. Each
  product is a bucket (Pippenger) multi-exponentiation: per ``w``-bit window, every row's
  ciphertext is multiplied into the bucket of its digit, and the buckets are combined with two
  running products. That costs about ``rows · bits(X) / w`` modular multiplications per feature
  instead of ``rows · 1.5 · bits(X)`` for one exponentiation per row.
* :func:`pack_and_mask` / :func:`unmask`: the ``d`` gradient ciphertexts are packed into
  ``ceil(d / slots)`` ciphertexts (Horner, :func:`fedsilo.crypto.paillier.pack_ciphertexts`),
  and each is multiplied by a *fresh* textbook encryption of a uniform mask ``m`` mod ``n``.
  The fresh ``r^n`` (uniform ``r``) re-randomises the ciphertext completely, so the key holder,
  who knows the factorisation and its own randomness, sees a uniform plaintext in a fresh-looking
  ciphertext: nothing about the exponents (the features) survives.

Packing bound: a residual is encoded as ``round(ρ·2^R)`` with ``|ρ| ≤ s_max / B`` (``s_max`` the
public class-weight ceiling, ``B`` the batch rows), a feature as ``|X| < 2^bx``; so
``|G_j| ≤ B · (s_max/B) · 2^R · 2^bx = s_max · 2^(R+bx)`` (plus ``B/2 · 2^bx`` for rounding
each residual, covered by one more bit), and the slot width ``W = R + bx + bits(s_max) + 2``
keeps every slot inside ``(-2^(W-1), 2^(W-1))``: the precondition of the no-overflow argument
in :mod:`fedsilo.crypto.paillier` (slot count ``2 * slots_per_ciphertext(bits, W)``, whose
proof covers ``2k`` slots of width ``W``).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

import gmpy2
import numpy as np
import numpy.typing as npt
from gmpy2 import mpz

from fedsilo import parallel, settings
from fedsilo.crypto import paillier
from fedsilo.errors import CryptoError, ProtocolError
from fedsilo.message import pack_uints, unpack_uints
from fedsilo.ml.secure_hist import ObfuscatorStock

__all__ = [
    "decrypt_packed",
    "encrypt_residuals",
    "encrypted_gradient",
    "feature_exponents",
    "pack_and_mask",
    "residual_integers",
    "slot_layout",
    "unmask",
]

IntArray = npt.NDArray[np.int64]


# --- label holder -------------------------------------------------------------------------------
def residual_integers(rho: npt.NDArray[np.float64], frac_bits: int) -> IntArray:
    """Fixed-point residuals ``round(ρ·2^R)``; refuses values outside the public bound."""
    bound = settings.LR_MAX_CLASS_WEIGHT
    if not np.all(np.abs(rho) <= bound):
        raise CryptoError("weighted residual above the class-weight ceiling")
    return np.round(np.asarray(rho) * float(2**frac_bits)).astype(np.int64)


def encrypt_residuals(stock: ObfuscatorStock, values: IntArray) -> bytes:
    """Encrypt integers with obfuscators from the key owner's stock; fixed-width bytes out.

    The obfuscators (nearly all of the cost) come from :class:`ObfuscatorStock`, which the
    label holder fills for the next batch while the passive parties work on this one.
    """
    public = stock.key.public
    cts = paillier.encrypt_with(public, values.tolist(), stock.take(len(values)))
    return pack_uints(cts, public.ciphertext_bytes)


def _tasks(rows: int) -> int:
    """Tasks for ``rows``: chunks of at most ``LR_WORK_CHUNK_ROWS``, a multiple of the worker
    count so that no worker is left with a lone extra chunk (3 tasks on 2 cores take 2 rounds)."""
    chunks = max(1, -(-rows // settings.LR_WORK_CHUNK_ROWS))
    workers = parallel.workers()
    return min(max(rows, 1), -(-chunks // workers) * workers)


def decrypt_packed(key: paillier.PrivateKey, blob: bytes) -> list[Any]:
    """Decrypt masked packed gradients to raw plaintexts in ``[0, n)`` (uniform to the holder)."""
    return [paillier.decrypt(key, c) for c in _ciphertexts(key.public, blob)]


def _ciphertexts(public: paillier.PublicKey, blob: bytes) -> list[Any]:
    values = unpack_uints(blob, public.ciphertext_bytes)
    n2 = public.n2
    if any(not 0 < c < n2 for c in values):
        raise ProtocolError("a ciphertext is out of range for the job's key")
    return values


# --- passive party ------------------------------------------------------------------------------
def feature_exponents(x_std: npt.NDArray[np.float64], frac_bits: int) -> IntArray:
    """Standardised features as fixed-point integer exponents ``round(x·2^F)``."""
    limit = float(2 ** (62 - frac_bits))
    if not np.all(np.abs(x_std) < limit):
        raise CryptoError("standardised feature too large for a fixed-point exponent")
    return np.round(np.asarray(x_std) * float(2**frac_bits)).astype(np.int64)


def _multiexp(bases: Sequence[Any], exps: IntArray, mod: Any, window: int) -> Any:
    """``Π bases[i]^exps[i] mod mod`` for non-negative ``exps`` (bucket method)."""
    if len(exps) == 0:
        return mpz(1)
    nwin = -(-int(exps.max()).bit_length() // window)
    digit_mask = (1 << window) - 1
    result = mpz(1)
    for w in range(nwin - 1, -1, -1):
        for _ in range(window):
            result = result * result % mod
        digits = (exps >> (w * window)) & digit_mask
        buckets: list[Any] = [None] * (digit_mask + 1)
        for i in np.flatnonzero(digits).tolist():
            d = int(digits[i])
            held = buckets[d]
            buckets[d] = bases[i] if held is None else held * bases[i] % mod
        result = result * _combine_buckets(buckets, mod) % mod
    return result


def _combine_buckets(buckets: list[Any], mod: Any) -> Any:
    """``Π_k bucket[k]^k`` with two running products (``2·2^w`` multiplications)."""
    running, acc = mpz(1), mpz(1)
    for k in range(len(buckets) - 1, 0, -1):
        if buckets[k] is not None:
            running = running * buckets[k] % mod
        acc = acc * running % mod
    return acc


def _gradient_chunk(n: int, blob: bytes, width: int, x_int: IntArray, window: int) -> bytes:
    """Worker: the positive-part and negative-part products of every feature for some rows."""
    n2 = mpz(n) * mpz(n)
    cts = unpack_uints(blob, width)
    out = []
    for j in range(x_int.shape[1]):
        col = x_int[:, j]
        pos, neg = np.flatnonzero(col > 0), np.flatnonzero(col < 0)
        out.append(_multiexp([cts[i] for i in pos.tolist()], col[pos], n2, window))
        out.append(_multiexp([cts[i] for i in neg.tolist()], -col[neg], n2, window))
    return pack_uints(out, width)


def encrypted_gradient(
    public: paillier.PublicKey, residuals: bytes, x_int: IntArray, *, task_count: int | None = None
) -> list[Any]:
    """``[Σ_i ρ_i X_ij]`` for every column ``j``: the encrypted gradient, one ciphertext each.

    ``task_count``: pool tasks to split the rows into (default: chunks of ``LR_WORK_CHUNK_ROWS``);
    each task pays ``~2·2^w`` multiplications per window and column to combine its buckets, so
    many rows go best in few tasks.
    """
    width = public.ciphertext_bytes
    rows = len(residuals) // width
    if rows != x_int.shape[0] or len(residuals) % width:
        raise ProtocolError(f"expected {x_int.shape[0]} encrypted residuals")
    _ciphertexts(public, residuals)  # range check before any work
    window = settings.LR_MULTIEXP_WINDOW_BITS
    tasks = [
        (int(public.n), residuals[a * width : b * width], width, x_int[a:b], window)
        for a, b in parallel.split_evenly(rows, task_count or _tasks(rows))
    ]
    n2 = public.n2
    d = x_int.shape[1]
    pos, neg = [mpz(1)] * d, [mpz(1)] * d
    for part in parallel.map_chunks(_gradient_chunk, tasks):
        values = unpack_uints(part, width)
        for j in range(d):
            pos[j] = pos[j] * values[2 * j] % n2
            neg[j] = neg[j] * values[2 * j + 1] % n2
    return [pos[j] * gmpy2.invert(neg[j], n2) % n2 for j in range(d)]


def slot_layout(key_bits: int, residual_frac_bits: int, x_int: IntArray) -> tuple[int, int]:
    """``(slot width W, slots per ciphertext)`` for packing this party's gradients."""
    x_bits = max(int(np.abs(x_int).max(initial=1)).bit_length(), 1)
    weight_bits = int(np.ceil(settings.LR_MAX_CLASS_WEIGHT)).bit_length()
    width = residual_frac_bits + x_bits + weight_bits + 2
    return width, 2 * paillier.slots_per_ciphertext(key_bits, width)


def pack_and_mask(
    public: paillier.PublicKey, grads: Sequence[Any], width: int, slots: int
) -> tuple[bytes, list[Any]]:
    """Pack gradient ciphertexts, add a uniform mask to each packed one, freshly randomised.

    Returns the ciphertext bytes for the key holder and the masks the party keeps.
    """
    n, n2 = public.n, public.n2
    out, masks = [], []
    for start in range(0, len(grads), slots):
        packed = paillier.pack_ciphertexts(n2, list(grads[start : start + slots]), width)
        mask = mpz(secrets.randbelow(int(n)))
        out.append(packed * paillier.encrypt_reference(public, mask) % n2)
        masks.append(mask)
    return pack_uints(out, public.ciphertext_bytes), masks


def unmask(
    public: paillier.PublicKey,
    opened: Sequence[Any],
    masks: Sequence[Any],
    width: int,
    slots: int,
    count: int,
) -> list[int]:
    """Remove the masks from the decrypted packed values and read the ``count`` gradients."""
    if len(opened) != len(masks):
        raise ProtocolError("masked gradient count does not match what was sent")
    n = public.n
    out: list[int] = []
    for value, mask in zip(opened, masks, strict=True):
        if not 0 <= value < n:
            raise ProtocolError("decrypted gradient out of range")
        v = (mpz(value) - mask) % n
        v = v - n if v > n // 2 else v
        take = min(slots, count - len(out))
        out.extend(paillier.unpack_slots(v, width, take))
    return out
