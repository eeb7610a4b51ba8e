"""The cross-silo block of the correlation matrix, under Paillier: no row leaves its silo.

Two silos, A (the *encrypter*) and B (the *evaluator*), each hold standardised columns over the
same aligned rows (:class:`fedsilo.protocols.stats.profile.Standardised`); the Pearson
correlation of A's column ``k`` and B's column ``j`` is ``mean_i(a_ik · b_ij)``.

1. A makes a fresh Paillier key for the job and encrypts, per row, its fixed-point columns
   ``A_ik = round(a_ik·2^F)`` packed into slots of ``W`` bits (``P_i = Σ_k A_ik·2^(W·k)``, as many
   columns per ciphertext as fit): ``stats.encrypted_columns``.
2. B computes, for each of its columns, ``Π_i [P_i]^(B_ij)`` with ``B_ij = round(b_ij·2^F)``
   (bucket multi-exponentiation, :func:`fedsilo.protocols.lr.paillier.encrypted_gradient`):
   the packed ``[Σ_k V_kj·2^(W·k)]`` with ``V_kj = Σ_i A_ik·B_ij``. Each result is multiplied by a
   fresh textbook encryption of zero ``r^n`` (uniform ``r``), so its randomness is uniform and
   independent of which rows and exponents made it: ``stats.cross_products``.
3. A decrypts and reads the slots: ``r_kj = V_kj / (n·2^(2F))``.

No overflow: standardised columns over ``n`` rows satisfy ``|z| ≤ √n`` and ``Σ z² = n``, so
``|V_kj| ≤ Σ_i (2^F|a_i| + ½)(2^F|b_i| + ½) ≤ 2^(2F)·n + 2^F·n + n/4 < 2^(2F+1)·n``; with
``W = 2F + bitlen(n) + 2`` every slot lies in ``(−2^(W−1), 2^(W−1))``, the precondition of the
packing argument in :mod:`fedsilo.crypto.paillier` (``2·slots_per_ciphertext`` slots).

Precision: rounding moves each value by at most ``2^-(F+1)``, so
``|Δr| ≤ 2^-(F+1)·(mean|a| + mean|b|) + 2^-(2F+2) ≤ 2^-F`` (as ``mean|z| ≤ 1``): with
``F = 24`` at most 6e-8 from the float64 Pearson coefficient, whatever the data. Security and
what each party learns: ``docs/leakage.md`` ("Column statistics") and ``docs/crypto.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from gmpy2 import mpz

from fedsilo import parallel
from fedsilo.crypto import paillier
from fedsilo.errors import CryptoError, ProtocolError
from fedsilo.leakage import register_kind
from fedsilo.message import Message, pack_uints, unpack_uints
from fedsilo.ml.secure_hist import ObfuscatorStock
from fedsilo.protocols.lr.paillier import encrypted_gradient, feature_exponents
from fedsilo.protocols.stats.profile import Standardised

__all__ = [
    "CROSS_PRODUCTS",
    "ENCRYPTED_COLUMNS",
    "FRAC_BITS",
    "Encrypter",
    "cross_products",
    "slot_width",
]

#: fractional bits of the fixed-point standardised values (precision bound 2^-F, above)
FRAC_BITS = 24

ENCRYPTED_COLUMNS = register_kind(
    "stats.encrypted_columns",
    reveals="Paillier ciphertexts of the sender's standardised columns, packed per row "
    "(nothing under DCR); the public key, the row count and how many columns it correlates",
)
CROSS_PRODUCTS = register_kind(
    "stats.cross_products",
    reveals="after decryption, for every pair of a recipient's column and a sender's column, "
    "the fixed-point sum of products of their standardised values over the aligned rows: "
    "the Pearson correlation at full precision; re-randomised, so nothing about which rows "
    "or values made it",
)

FloatArray = npt.NDArray[np.float64]


def slot_width(rows: int) -> int:
    """``W = 2F + bitlen(rows) + 2`` bits: room for one packed cross product (module docstring)."""
    return 2 * FRAC_BITS + int(rows).bit_length() + 2


def _groups(columns: int, key_bits: int, width: int) -> list[int]:
    """Sizes of the column groups packed into one ciphertext per row each."""
    per = 2 * paillier.slots_per_ciphertext(key_bits, width)
    return [min(per, columns - start) for start in range(0, columns, per)]


def _tasks(rows: int) -> int:
    """Pool tasks for the evaluator: a few per worker (thousands of rows each), since each task
    pays a fixed bucket-combination cost per column (``encrypted_gradient``)."""
    return max(1, min(2 * parallel.workers(), rows // 2048))


def _fixed(std: Standardised) -> npt.NDArray[np.int64]:
    return feature_exponents(std.z, FRAC_BITS)


class Encrypter:
    """Party A: its key, its encrypted columns, and the correlation blocks it opens."""

    def __init__(
        self, std: Standardised, *, key_bits: int, insecure_min_bits: int | None = None
    ) -> None:
        if std.rows == 0 or not std.names:
            raise ProtocolError("no rows or no columns to correlate")
        self.std = std
        self.public, self._key = paillier.generate_keypair(
            key_bits, insecure_min_bits=insecure_min_bits
        )
        self.width = slot_width(std.rows)
        self.groups = _groups(len(std.names), self.public.bits, self.width)

    def message(self) -> Message:
        """``stats.encrypted_columns``: every row's packed columns, one blob per group."""
        x = _fixed(self.std)
        stock = ObfuscatorStock(self._key)
        stock.prefetch(self.std.rows * len(self.groups))
        blobs, start = {}, 0
        for g, size in enumerate(self.groups):
            packed = [_pack(row, self.width) for row in x[:, start : start + size].tolist()]
            cts = paillier.encrypt_with(self.public, packed, stock.take(len(packed)))
            blobs[f"g{g}"] = pack_uints(cts, self.public.ciphertext_bytes)
            start += size
        meta = {
            "n": format(int(self.public.n), "x"),
            "rows": self.std.rows,
            "groups": self.groups,
            "frac_bits": FRAC_BITS,
        }
        return Message(ENCRYPTED_COLUMNS, meta=meta, blobs=blobs)

    def open(self, reply: Message) -> FloatArray:
        """The correlation block (A's columns × the evaluator's columns) from its reply."""
        reply.expect(CROSS_PRODUCTS)
        columns = _count(reply.meta, "columns")
        width = self.public.ciphertext_bytes
        block = np.empty((len(self.std.names), columns))
        start = 0
        scale = float(self.std.rows) * float(2 ** (2 * FRAC_BITS))
        for g, size in enumerate(self.groups):
            cts = unpack_uints(reply.blob(f"g{g}"), width)
            if len(cts) != columns:
                raise ProtocolError(f"expected {columns} cross products in group {g}")
            for j, c in enumerate(cts):
                if not 0 < c < self.public.n2:
                    raise ProtocolError("a cross product is out of range for the job's key")
                value = paillier.decrypt_signed(self._key, mpz(c))
                slots = paillier.unpack_slots(value, self.width, size)
                block[start : start + size, j] = np.asarray(slots, dtype=np.float64) / scale
            start += size
        return block


def _pack(values: Sequence[int], width: int) -> int:
    """``Σ_k values[k]·2^(W·k)`` (signed slots; the lowest first)."""
    out = 0
    for v in reversed(values):
        out = (out << width) + int(v)
    return out


def _count(meta: dict[str, Any], key: str) -> int:
    value = meta.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProtocolError(f"message meta '{key}' must be a count")
    return value


def cross_products(
    std: Standardised, received: Message, *, insecure_min_bits: int | None = None
) -> Message:
    """Party B: ``stats.cross_products`` for A's ``stats.encrypted_columns``.

    Refuses a key below the secure floor (or ``insecure_min_bits``), a row count other than its
    own, and a precision or packing other than this protocol's, before any arithmetic.
    """
    received.expect(ENCRYPTED_COLUMNS)
    meta = received.meta
    try:
        public = paillier.PublicKey.from_n(
            int(str(meta["n"]), 16), insecure_min_bits=insecure_min_bits
        )
    except (KeyError, ValueError):
        raise ProtocolError("stats.encrypted_columns carries no valid public key") from None
    rows = _count(meta, "rows")
    if rows != std.rows:
        raise ProtocolError(f"encrypted columns cover {rows} rows, this silo holds {std.rows}")
    if meta.get("frac_bits") != FRAC_BITS:
        raise ProtocolError("encrypted columns use another fixed-point precision")
    groups = meta.get("groups")
    if not isinstance(groups, list) or not groups or not all(isinstance(g, int) for g in groups):
        raise ProtocolError("stats.encrypted_columns has no column groups")
    per = 2 * paillier.slots_per_ciphertext(public.bits, slot_width(rows))
    if any(not 0 < g <= per for g in groups):
        raise CryptoError("encrypted columns pack more slots than the key holds")
    x = _fixed(std)
    width = public.ciphertext_bytes
    blobs = {}
    for g in range(len(groups)):
        cts = encrypted_gradient(public, received.blob(f"g{g}"), x, task_count=_tasks(rows))
        fresh = [c * paillier.encrypt_reference(public, 0) % public.n2 for c in cts]
        blobs[f"g{g}"] = pack_uints(fresh, width)
    return Message(CROSS_PRODUCTS, meta={"columns": len(std.names)}, blobs=blobs)
