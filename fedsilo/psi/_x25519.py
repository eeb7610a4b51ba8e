"""The curve arithmetic of ECDH-PSI: hash ids to Curve25519 u-coordinates and blind them.

Group. X25519 (RFC 7748) through a vetted, constant-time library: OpenSSL via ``cryptography`` or
libsodium via PyNaCl (``settings.PSI_X25519_BACKEND``). A "point" is a 32-byte u-coordinate.
Blinding is ``X25519(k, u)``, the u-coordinate of ``[k]P``; clamped scalars are multiples of 8,
so ``X25519(a, X25519(b, u)) == X25519(b, X25519(a, u))`` (tested) and every result lies in the
prime-order subgroup of the curve.

Hash to point (v2). RFC 9380 hash-to-curve with Elligator 2, u-coordinate only
(:mod:`._hash_to_curve`): ``msg = len(context) || context || utf8(id)`` under the domain tag
:data:`DST`. Every hashed id lands on Curve25519 itself; v1 took 32 hash bytes as u, which lands on
the twist half of the time, so each blinded id leaked that one bit (blinding keeps curve and twist
apart). ``context`` is per job (job id and a salt), so blinded values of two jobs cannot be linked
even by a party that kept its secret. The hash never leaves the worker that computes it: only
blinded points come out. It is not constant time (Python integers): see ``docs/crypto.md``.

Peer points. Every point a peer sends must be a canonical u-coordinate on the curve (a Legendre
symbol, in the workers, before blinding); a twist point or a low-order point (all-zero X25519
output, refused by both libraries) is a :class:`ProtocolError`. An own id hashes to a low-order
point with probability ~2^-250 (:class:`CryptoError`).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from nacl.bindings import crypto_scalarmult
from nacl.exceptions import RuntimeError as NaclRuntimeError
from nacl.utils import random as nacl_random

from fedsilo import parallel, settings
from fedsilo.errors import ConfigError, CryptoError, ProtocolError

from ._hash_to_curve import first_off_curve, hash_to_curve_many
from ._ids import pack_ids

__all__ = [
    "DST",
    "POINT_BYTES",
    "blind",
    "hash_and_blind",
    "hash_to_points",
    "new_secret",
    "points_array",
]

POINT_BYTES = 32
#: the RFC 9380 domain separation tag of PSI hashing; its version changes with the construction
DST = b"fedsilo/psi/v2/curve25519_XMD:SHA-512_ELL2_NU_"

#: multiplies every 32-byte point of a buffer by one secret scalar (a whole chunk per call: the
#: per-point Python overhead is a list comprehension step, ~1 µs next to ~25 µs of arithmetic)
Multiplier = Callable[[bytes], bytes]


class _LowOrder(Exception):
    """Internal: a scalar multiplication gave the all-zero point."""


def new_secret() -> bytes:
    """A fresh 32-byte X25519 scalar from the OS CSPRNG (libsodium ``randombytes``)."""
    return nacl_random(POINT_BYTES)


def _openssl(secret: bytes) -> Multiplier:
    key = X25519PrivateKey.from_private_bytes(secret)
    exchange, load = key.exchange, X25519PublicKey.from_public_bytes

    def mul(points: bytes) -> bytes:
        try:
            return b"".join([exchange(load(points[i : i + 32])) for i in range(0, len(points), 32)])
        except ValueError:
            raise _LowOrder from None

    return mul


def _libsodium(secret: bytes) -> Multiplier:
    def mul(points: bytes) -> bytes:
        try:
            return b"".join(
                [crypto_scalarmult(secret, points[i : i + 32]) for i in range(0, len(points), 32)]
            )
        except NaclRuntimeError:
            raise _LowOrder from None

    return mul


_BACKENDS: dict[str, Callable[[bytes], Multiplier]] = {"openssl": _openssl, "libsodium": _libsodium}


def _multiplier(secret: bytes, backend: str | None) -> Multiplier:
    """The scalar multiplication by ``secret`` of the chosen (or configured) backend."""
    name = backend or settings.PSI_X25519_BACKEND
    if name not in _BACKENDS:
        raise ConfigError(f"unknown PSI_X25519_BACKEND {name!r} (openssl or libsodium)")
    if len(secret) != POINT_BYTES:
        raise CryptoError(f"a PSI secret is {POINT_BYTES} bytes, got {len(secret)}")
    return _BACKENDS[name](secret)


def _hash_chunk(context: bytes, blob: bytes, ends: np.ndarray) -> bytes:
    """Elligator 2 u-coordinates (32 bytes, little-endian) of packed ids under ``context``."""
    prefix = struct.pack(">I", len(context)) + context
    return hash_to_curve_many(DST, prefix, blob, [0, *ends.tolist()])


def _refuse_twist(points: bytes) -> None:
    """A ProtocolError unless every 32-byte point is a canonical u-coordinate on the curve."""
    if first_off_curve(points) >= 0:
        raise ProtocolError("peer sent a point that is not on Curve25519 (twist or non-canonical)")


def _hash_blind_chunk(
    secret: bytes, context: bytes, ids: list[object], first_row: int, backend: str
) -> bytes:
    """Check, hash and blind a chunk of ids; the unblinded hash never leaves this function."""
    blob, ends = pack_ids(ids, first_row)
    mul = _multiplier(secret, backend)
    try:
        return mul(_hash_chunk(context, blob, ends))
    except _LowOrder:
        raise CryptoError("an id hashed to a low-order point (probability ~2^-250)") from None


def _blind_chunk(secret: bytes, points: bytes, backend: str) -> bytes:
    """Check and blind a chunk of a peer's points; a twist or low-order point is misbehaviour."""
    mul = _multiplier(secret, backend)
    _refuse_twist(points)
    try:
        return mul(points)
    except _LowOrder:
        raise ProtocolError("peer sent a low-order curve point") from None


# --- public, array-level API -------------------------------------------------------------------


def points_array(raw: bytes) -> np.ndarray:
    """Concatenated 32-byte points as an ``(n, 32) uint8`` array (no copy)."""
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, POINT_BYTES)


def check_points(points: np.ndarray) -> np.ndarray:
    """A peer's points as a C-contiguous ``(n, 32) uint8`` array, or a ProtocolError."""
    if points.dtype != np.uint8 or points.ndim != 2 or points.shape[1] != POINT_BYTES:
        raise ProtocolError(
            f"PSI points must be an (n, {POINT_BYTES}) uint8 array, got {points.dtype} "
            f"{points.shape}"
        )
    return np.ascontiguousarray(points)


def _spans(n: int) -> list[tuple[int, int]]:
    step = max(1, settings.PSI_WORK_CHUNK_IDS)
    return [(s, min(n, s + step)) for s in range(0, n, step)]


def hash_to_points(blob: bytes, ends: np.ndarray, context: bytes) -> np.ndarray:
    """Unblinded points of packed ids, in this process. For tests and known answers only."""
    return points_array(_hash_chunk(context, blob, ends))


def hash_and_blind(
    secret: bytes,
    ids: Sequence[object],
    context: bytes,
    first_row: int = 0,
    backend: str | None = None,
) -> np.ndarray:
    """``X25519(secret, H(id))`` for a batch of ids, on all cores; ``(n, 32) uint8``.

    Workers also check and encode the ids (:func:`pack_ids`), so this process only slices the
    list: the cores never wait for it. A bad id raises :class:`DataError` naming its row.
    """
    name = backend or settings.PSI_X25519_BACKEND
    chunks = [(secret, context, list(ids[a:b]), first_row + a, name) for a, b in _spans(len(ids))]
    return points_array(b"".join(parallel.map_chunks(_hash_blind_chunk, chunks)))


def blind(secret: bytes, points: np.ndarray, backend: str | None = None) -> np.ndarray:
    """``X25519(secret, u)`` for each of a peer's points, on all cores; ``(n, 32) uint8``.

    Refuses (:class:`ProtocolError`) a point on the twist, non-canonical or of low order.
    """
    pts = check_points(points)
    name = backend or settings.PSI_X25519_BACKEND
    chunks = [(secret, pts[a:b].tobytes(), name) for a, b in _spans(len(pts))]
    return points_array(b"".join(parallel.map_chunks(_blind_chunk, chunks)))
