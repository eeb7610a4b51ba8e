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
from collections.abc import Callable, Sequence

from gmpy2 import invert, jacobi, mpz

__all__ = [
    "P",
    "expand_message_xmd",
    "field_hasher",
    "first_off_curve",
    "hash_to_curve_many",
    "is_on_curve",
    "map_to_curve",
]

P = 2**255 - 19
_A = 486662
_MP = mpz(P)
_MINUS_A = mpz(-_A)
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

    ``1 + 2 r^2`` is never 0 (2 is not a square mod p), so one inversion always exists. For
    p prime the Jacobi symbol is the Legendre symbol (GMP computes it faster as such).
    """
    x1 = _MINUS_A * invert(2 * mpz(r) ** 2 + 1, _MP) % _MP
    if jacobi(x1 * (x1 * (x1 + _A) + 1) % _MP, _MP) < 0:
        x1 = (_MINUS_A - x1) % _MP
    return int(x1)


def hash_to_curve_many(dst: bytes, prefix: bytes, blob: bytes, bounds: Sequence[int]) -> bytes:
    """``map_to_curve(hash_to_field(prefix + blob[a:b]))`` for each consecutive ``a, b`` of
    ``bounds``, as 32-byte little-endian u-coordinates, concatenated.

    The same bytes as :func:`field_hasher` and :func:`map_to_curve` id by id, cheaper per id (the
    hot loop of PSI hashing): ``zero block || prefix`` is hashed once and its SHA-512 state copied
    per id; ``r`` and ``1 + 2 r^2`` are left unreduced (only their values mod p matter); and the
    ``1 + 2 r^2`` of the whole chunk are inverted together (Montgomery's trick: one inversion and
    three multiplications per id, about half the cost of one GMP inversion each). No ``1 + 2 r^2``
    is 0 mod p, so no product is either.
    """
    tag = _dst_prime(dst)
    copy = hashlib.sha512(bytes(_S_BYTES) + prefix).copy
    suffix = _L.to_bytes(2, "big") + b"\0" + tag
    tail, sha, from_bytes = b"\x01" + tag, hashlib.sha512, mpz.from_bytes
    mp, a_coef, minus_a, jac = _MP, _A, _MINUS_A, jacobi
    # pass 1: field element r, d = 1 + 2 r^2 and the product of the d before it, per id
    dens: list[mpz] = []
    before: list[mpz] = []
    keep_d, keep_before, prod = dens.append, before.append, mpz(1)
    for a, b in zip(bounds, bounds[1:], strict=False):
        h = copy()
        h.update(blob[a:b] + suffix)
        r = from_bytes(sha(h.digest() + tail).digest()[:_L], "big")
        d = r * r * 2 + 1
        keep_before(prod)
        keep_d(d)
        prod = prod * d % mp
    # pass 2, last id first: x1 = -A / d from the inverse of the running product
    scaled = minus_a * invert(prod, mp) % mp  # -A / (d_1 ... d_i) for the current id i
    out: list[bytes] = []
    put = out.append
    for d, pre in zip(reversed(dens), reversed(before), strict=True):
        x1 = pre * scaled % mp
        scaled = scaled * d % mp
        if jac(x1 * (x1 * (x1 + a_coef) + 1) % mp, mp) < 0:
            x1 = (minus_a - x1) % mp
        put(x1.to_bytes(32, "little"))
    out.reverse()
    return b"".join(out)


def is_on_curve(u: int) -> bool:
    """Whether ``u`` is a canonical u-coordinate of Curve25519 (not of its twist)."""
    return u < P and jacobi(u * (u * (u + _A) + 1) % _MP, _MP) >= 0


def first_off_curve(points: bytes) -> int:
    """The index of the first 32-byte little-endian point of ``points`` that fails
    :func:`is_on_curve`, or -1 if none does."""
    mp, a_coef, jac, from_bytes = _MP, _A, jacobi, mpz.from_bytes
    for i in range(0, len(points), 32):
        u = from_bytes(points[i : i + 32], "little")
        if u >= mp or jac(u * (u * (u + a_coef) + 1) % mp, mp) < 0:
            return i // 32
    return -1
