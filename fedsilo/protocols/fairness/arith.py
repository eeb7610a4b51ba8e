"""Integer helpers of the fairness audit: slot packing, masks, a multi-exponentiation."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from gmpy2 import mpz

from fedsilo.errors import ProtocolError

__all__ = ["multi_powmod", "pack_slots", "random_masks", "unpack_slots"]


def pack_slots(values: Sequence[Any], width: int) -> Any:
    """``Σ_k values[k]·2^(width·k)`` for non-negative values below ``2^width``."""
    acc = mpz(0)
    for v in reversed(values):
        acc = (acc << width) + mpz(v)
    return acc


def unpack_slots(value: Any, width: int, count: int) -> list[Any]:
    """Inverse of :func:`pack_slots`; a value beyond ``count`` slots is refused."""
    mask = (mpz(1) << width) - 1
    out = []
    for _ in range(count):
        out.append(value & mask)
        value >>= width
    if value:
        raise ProtocolError("a decrypted statistic overflows its slots")
    return out


def random_masks(count: int, bits: int) -> list[Any]:
    """``count`` uniform integers below ``2^bits`` from the OS CSPRNG."""
    size = (bits + 7) // 8
    raw = os.urandom(count * size)
    top = (mpz(1) << bits) - 1
    return [mpz(int.from_bytes(raw[i * size : (i + 1) * size], "big")) & top for i in range(count)]


def multi_powmod(bases: Sequence[Any], exponents: Sequence[Any], mod: Any, window: int = 5) -> Any:
    """``Π bases[k]^exponents[k] mod mod`` (non-negative exponents) by Pippenger's buckets.

    Per ``window`` bits of the exponents: one multiplication per base into the bucket of its
    digit, then ``2·2^window`` to weigh the buckets; about 6x fewer multiplications than one
    ``powmod`` per base for a few hundred 56-bit exponents.
    """
    if len(bases) != len(exponents):
        raise ValueError("as many exponents as bases")
    top = max((int(e).bit_length() for e in exponents), default=0)
    digit = (1 << window) - 1
    acc = mpz(1)
    for w in reversed(range(-(-top // window))):
        for _ in range(window):
            acc = acc * acc % mod
        buckets = [mpz(1)] * (digit + 1)
        shift = w * window
        for b, e in zip(bases, exponents, strict=True):
            d = (int(e) >> shift) & digit
            if d:
                buckets[d] = buckets[d] * b % mod
        running, total = mpz(1), mpz(1)
        for d in range(digit, 0, -1):
            running = running * buckets[d] % mod
            total = total * running % mod
        acc = acc * total % mod
    return acc
