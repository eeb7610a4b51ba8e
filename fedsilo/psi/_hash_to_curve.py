"""Hash to Curve25519 (RFC 9380, Elligator 2), u-coordinate only, and the curve-or-twist test.

The construction is the RFC's ``encode_to_curve`` for the suite ``curve25519_XMD:SHA-512_ELL2_NU_``
with fedsilo's own domain tag: ``hash_to_field`` (``expand_message_xmd`` with SHA-512, 48 bytes,
reduced mod p; section 5) then the Elligator 2 map (section 6.7.1, Z = 2): with
``x1 = -A / (1 + 2 r^2)``, the u-coordinate is ``x1`` if ``x1^3 + A x1^2 + x1`` is a square, else
``-x1 - A``. The result always lies on Curve25519, never on its twist. The RFC's last step,
``clear_cofactor`` (multiply by 8), is left to X25519: its scalars are multiples of 8, so every
blinded point is in the prime-order subgroup. The RFC's test vectors (appendix J.4.2) check
:func:`hash_to_field` and :func:`map_to_curve` (``tests/protocols/psi/test_psi_core.py``).

Not constant time: Python integers and GMP branch and loop on their values. The input is the hash
of the silo's own id, computed inside the silo's own worker processes, and only blinded points
leave them; ``docs/crypto.md`` weighs this.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from gmpy2 import invert, legendre, mpz

__all__ = ["P", "expand_message_xmd", "field_hasher", "is_on_curve", "map_to_curve"]

P = 2**255 - 19
_A = 486662
_MP = mpz(P)
#: bytes of uniform output per field element: ceil((255 + 128) / 8), so the bias mod p is ~2^-128
_L = 48
_B_BYTES, _S_BYTES = 64, 128  # SHA-512 output and block sizes


def _dst_prime(dst: bytes) -> bytes:
    if not 0 < len(dst) <= 255:
        raise ValueError("a hash-to-curve domain tag is 1 to 255 bytes")
    return dst + bytes([len(dst)])


def expand_message_xmd(msg: bytes, dst: bytes, length: int) -> bytes:
    """RFC 9380 section 5.3.1 with SHA-512: ``length`` uniform bytes from ``msg``."""
    ell = -(-length // _B_BYTES)
    if ell > 255 or length > 65535:
        raise ValueError("expand_message_xmd: requested length is too long")
    tag = _dst_prime(dst)
    b0 = hashlib.sha512(bytes(_S_BYTES) + msg + length.to_bytes(2, "big") + b"\0" + tag).digest()
    out, prev = [], bytes(_B_BYTES)
    for i in range(1, ell + 1):
        mixed = bytes(a ^ b for a, b in zip(b0, prev, strict=True))
        prev = hashlib.sha512(mixed + bytes([i]) + tag).digest()
        out.append(prev)
    return b"".join(out)[:length]


def field_hasher(dst: bytes) -> Callable[[bytes], int]:
    """``hash_to_field(msg, count=1)`` for one domain tag, as a fast closure: ``msg -> int``.

    Same bytes as :func:`expand_message_xmd` with 48 bytes (one SHA-512 block of output), but the
    all-zero first block is hashed once and its state copied per message.
    """
    tag = _dst_prime(dst)
    zero_block = hashlib.sha512(bytes(_S_BYTES))
    suffix = _L.to_bytes(2, "big") + b"\0" + tag
    tail, sha = b"\x01" + tag, hashlib.sha512

    def to_field(msg: bytes) -> int:
        h = zero_block.copy()
        h.update(msg + suffix)
        return int.from_bytes(sha(h.digest() + tail).digest()[:_L], "big") % P

    return to_field


def map_to_curve(r: int) -> int:
    """Elligator 2 (RFC 9380 section 6.7.1): the u-coordinate of a Curve25519 point for ``r``.

    ``1 + 2 r^2`` is never 0 (2 is not a square mod p), so one inversion always exists.
    """
    x1 = -_A * invert(2 * r * r + 1, _MP) % _MP
    if legendre(x1 * (x1 * (x1 + _A) + 1) % _MP, _MP) == -1:
        x1 = (-x1 - _A) % _MP
    return int(x1)


def is_on_curve(u: int) -> bool:
    """Whether ``u`` is a canonical u-coordinate of Curve25519 (not of its twist)."""
    return u < P and legendre(u * (u * (u + _A) + 1) % P, _MP) != -1
