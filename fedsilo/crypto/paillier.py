"""Paillier for SecureBoost: ``phe``-compatible ciphertexts, a fast encryption path, packing.

Compatibility
    Keys are python-paillier's (``g = n + 1``); a ciphertext is the same integer mod ``n²`` that
    ``phe`` produces, so ``phe.PaillierPrivateKey.raw_decrypt`` opens ours and :func:`decrypt`
    opens ``phe``'s (``tests/test_paillier.py``). Only the way the randomness is drawn differs.

Fast encryption (only the key owner encrypts in SecureBoost, so it may use the private key)
    * CRT: the ciphertext is computed mod ``p²`` and ``q²`` (2048-bit moduli for a 2048-bit key,
      ~1.3 µs per multiplication here instead of ~4 µs mod ``n²``) and recombined once.
    * ``(1 + m·n) mod p²`` is ``1 + p·((m·q) mod p)``: two 1024-bit operations, no 4096-bit one.
    * DJN-style obfuscator with fixed-base tables: instead of ``r^n`` (a 2048-bit exponent, ~9 ms)
      we use ``hs^x`` with ``hs = h^n mod n²`` for a random unit ``h`` drawn at key creation, and a
      fresh uniform ``x`` of ``2κ`` bits for a key of κ-bit strength (224 for 2048-bit keys; never
      below :data:`fedsilo.settings.PAILLIER_DJN_EXPONENT_BITS`, see :func:`djn_exponent_bits`).
      ``hs^x = Π_j T_j[x_j]`` over ``w``-bit digits of ``x`` from tables ``T_j[v] = hs^(v·2^(wj))``
      (mod ``p²`` and ``q²``): one multiplication per digit, 36 in all at 2048 bits.
    * Obfuscators do not depend on the message: :func:`obfuscators` precomputes them (the label
      holder does it for the next tree while passive parties work) and :func:`encrypt_with`
      spends one per ciphertext at the cost of a single 2048-bit reduction.

    Security of the shortcut. ``hs^x`` is an ``n``-th residue, so the ciphertext is a valid
    Paillier encryption whatever ``x`` is; only its *distribution* changes. Damgård, Jurik and
    Nielsen (PKC 2001, §4.1, and "A generalization of Paillier's public-key system", 2010)
    show the scheme stays IND-CPA under DCR when ``x`` is uniform below ``2^⌈k/2⌉``; taking
    ``x`` shorter (but ≥ 2κ bits for κ-bit security, so that generic square-root attacks on the
    exponent cost ≥ 2^κ) additionally relies on the short-exponent indistinguishability
    assumption for the group of ``n``-th residues, the same kind of assumption short-randomness
    OU and DJN implementations rely on. ``h`` and ``hs`` never leave the key owner, and an
    obfuscator is never used twice (two ciphertexts sharing ``r`` would reveal the difference of
    their plaintexts). ``docs/crypto.md`` repeats this caveat.

Re-randomisation (a passive party, before sums it computed go back to the key owner)
    The key owner knows the randomness of its own ciphertexts, so a bare product of them would
    tell it which ciphertexts were multiplied. It publishes ``g = hs^u`` (:func:`rerandomiser_base`,
    ``u`` secret and prime to ``λ``): a generator of the subgroup all its obfuscators lie in, which
    does not reveal ``hs``. A passive party multiplies each reply by ``g^a`` for a fresh uniform
    ``a`` of ``bits(n) + 128`` bits (fixed-base tables mod ``n²``, :class:`RerandomiserTables`):
    the reply's randomness is then within ``2^-128`` of uniform in that subgroup, whatever rows
    were summed. The argument is in ``docs/crypto.md``.

Packing (plaintext layout; ``W`` = slot width in bits, see :func:`slot_bits`)
    A row is encrypted as ``g·2^W + h`` (fixed-point integers, ``g`` signed, ``h ≥ 0``). On the
    way back the passive party packs ``k`` bin sums ``(G_j, H_j)`` into one ciphertext as
    ``Σ_j 2^(2Wj)·(G_j·2^W + H_j)`` by Horner's rule on ciphertexts (``c ← c^(2^(2W))·c_j``).
    :func:`unpack_slots` reads the ``2k`` signed slots back as balanced base-``2^W`` digits.

    No overflow (the proof behind ``tests/test_paillier.py::test_packing_never_overflows``).
    Let every row satisfy ``|g| ≤ 2^S`` and ``0 ≤ h ≤ 2^S``, a bin sum cover at most ``N`` rows,
    and ``W = S + bitlen(N) + 1``. Then ``|G|, |H| ≤ N·2^S < 2^(bitlen(N)+S) = 2^(W-1)``, so every
    slot value ``d_i`` lies in ``(-2^(W-1), 2^(W-1))``. For ``V = Σ_{i<2k} d_i·2^(Wi)``,
    ``|V| ≤ (2^(W-1) - 1)·(2^(2kW) - 1)/(2^W - 1) < 2^(2kW)/2`` (as ``2^W - 2 < 2^W - 1``). With
    ``2kW ≤ bitlen(n) - 1`` (:func:`slots_per_ciphertext`) this is ``< 2^(bitlen(n)-2) < n/2``,
    so the decryption ``V mod n`` lifted to ``(-n/2, n/2)`` is ``V`` itself as an integer.
    Balanced digits with ``|d_i| < 2^(W-1)`` are unique: ``d_0`` is the only value in
    ``[-2^(W-1), 2^(W-1))`` congruent to ``V`` mod ``2^W``; recurse on ``(V - d_0)/2^W``.

All arithmetic is on gmpy2 integers; nothing is encoded as floats with exponents (``phe``'s
``EncryptedNumber`` alignment is exactly what the hot loops avoid).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import gmpy2
import numpy as np
from gmpy2 import mpz

from fedsilo import settings
from fedsilo.errors import CryptoError, PolicyError, ProtocolError

__all__ = [
    "ObfuscatorTables",
    "PrivateKey",
    "PublicKey",
    "RerandomiserTables",
    "check_rerandomiser_base",
    "decrypt",
    "decrypt_signed",
    "djn_exponent_bits",
    "encrypt_packed",
    "encrypt_reference",
    "encrypt_with",
    "generate_keypair",
    "obfuscators",
    "pack_ciphertexts",
    "pack_row",
    "rerandomise",
    "rerandomiser_base",
    "rerandomiser_tables",
    "rerandomisers",
    "security_bits",
    "slot_bits",
    "slots_per_ciphertext",
    "tables_for",
    "unpack_slots",
]


@dataclass(frozen=True)
class PublicKey:
    """``n`` of a Paillier key with ``g = n + 1`` (python-paillier's convention)."""

    n: Any

    @property
    def n2(self) -> Any:
        return self.n * self.n

    @property
    def bits(self) -> int:
        return int(gmpy2.bit_length(self.n))

    @property
    def ciphertext_bytes(self) -> int:
        """Fixed width of a ciphertext on the wire."""
        return (2 * self.bits + 7) // 8

    def fingerprint(self) -> str:
        return hashlib.sha256(gmpy2.to_binary(mpz(self.n))).hexdigest()[:16]

    @classmethod
    def from_n(cls, n: int, *, insecure_min_bits: int | None = None) -> PublicKey:
        """A peer's key, refused when smaller than the secure minimum (or an explicit lower one)
        or larger than ``PAILLIER_MAX_BITS`` (``ProtocolError``, checked before any arithmetic)."""
        bits = int(n).bit_length()
        if bits > settings.PAILLIER_MAX_BITS:
            raise ProtocolError(
                f"peer's Paillier key of {bits} bits is above the ceiling of "
                f"{settings.PAILLIER_MAX_BITS} bits"
            )
        key = cls(mpz(n))
        _check_bits(key.bits, insecure_min_bits)
        return key

    def encrypt_zero(self) -> Any:
        """``Enc(0)`` with randomness 1: the neutral element for homomorphic sums."""
        return mpz(1)


@dataclass(frozen=True)
class PrivateKey:
    """The primes, with the CRT constants decryption and fast encryption use."""

    public: PublicKey
    p: Any
    q: Any
    #: ``hs = h^n mod n²`` for a secret random unit ``h``: the fixed DJN base (module docstring)
    hs: Any

    @property
    def p2(self) -> Any:
        return self.p * self.p

    @property
    def q2(self) -> Any:
        return self.q * self.q

    def to_phe(self) -> tuple[Any, Any]:
        """The same key as python-paillier objects (for interoperability and tests)."""
        import phe

        pub = phe.PaillierPublicKey(int(self.public.n))
        return pub, phe.PaillierPrivateKey(pub, int(self.p), int(self.q))

    @classmethod
    def from_primes(cls, p: int, q: int) -> PrivateKey:
        p, q = (mpz(min(p, q)), mpz(max(p, q)))
        if p == q or not (gmpy2.is_prime(p) and gmpy2.is_prime(q)):
            raise CryptoError("Paillier primes must be two distinct primes")
        n = p * q
        return cls(public=PublicKey(n), p=p, q=q, hs=_djn_base(n))


def _check_bits(bits: int, insecure_min_bits: int | None) -> None:
    floor = settings.PAILLIER_MIN_SECURE_BITS if insecure_min_bits is None else insecure_min_bits
    if bits < floor:
        raise CryptoError(
            f"Paillier key of {bits} bits is below the minimum of {floor} bits"
            " (smaller keys need the explicit insecure option)"
        )


def _random_below(bound: Any) -> Any:
    nbytes = (int(gmpy2.bit_length(bound)) + 64 + 7) // 8  # 64 extra bits: negligible bias
    return mpz(int.from_bytes(os.urandom(nbytes), "big")) % bound


def _djn_base(n: Any) -> Any:
    """``hs = h^n mod n²`` for a uniform unit ``h``: one full exponentiation per key."""
    while True:
        h = _random_below(n)
        if h > 1 and gmpy2.gcd(h, n) == 1:
            return gmpy2.powmod(h, n, n * n)


def generate_keypair(
    bits: int = settings.PAILLIER_KEY_BITS, *, insecure_min_bits: int | None = None
) -> tuple[PublicKey, PrivateKey]:
    """A fresh key pair; sizes below the secure minimum need ``insecure_min_bits`` (tests), sizes
    above ``PAILLIER_MAX_BITS`` are refused (``PolicyError``)."""
    if bits > settings.PAILLIER_MAX_BITS:
        raise PolicyError(
            f"a Paillier key of {bits} bits is above the ceiling of "
            f"{settings.PAILLIER_MAX_BITS} bits"
        )
    _check_bits(bits, insecure_min_bits)
    import phe

    pub, priv = phe.generate_paillier_keypair(n_length=bits)
    key = PrivateKey.from_primes(int(priv.p), int(priv.q))
    if key.public.bits < bits:  # phe may return n one bit short; draw again
        return generate_keypair(bits, insecure_min_bits=insecure_min_bits)
    return key.public, key


# --- decryption ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CrtConstants:
    p: Any
    q: Any
    p2: Any
    q2: Any
    hp: Any
    hq: Any
    p_inv_q: Any
    q2_inv_p2: Any


_CRT_CACHE: dict[tuple[int, int], _CrtConstants] = {}


def _crt(key: PrivateKey) -> _CrtConstants:
    cached = _CRT_CACHE.get((int(key.p), int(key.q)))
    if cached is None:
        p, q, n = key.p, key.q, key.public.n
        p2, q2 = p * p, q * q
        hp = gmpy2.invert((gmpy2.powmod(n + 1, p - 1, p2) - 1) // p, p)
        hq = gmpy2.invert((gmpy2.powmod(n + 1, q - 1, q2) - 1) // q, q)
        cached = _CrtConstants(p, q, p2, q2, hp, hq, gmpy2.invert(p, q), gmpy2.invert(q2, p2))
        _CRT_CACHE[(int(p), int(q))] = cached
    return cached


def decrypt(key: PrivateKey, ciphertext: Any) -> Any:
    """Raw plaintext in ``[0, n)`` (CRT, as python-paillier's ``raw_decrypt``)."""
    k = _crt(key)
    c = mpz(ciphertext)
    if not 0 < c < key.public.n2:
        raise CryptoError("ciphertext is out of range for this key")
    mp = (gmpy2.powmod(c, k.p - 1, k.p2) - 1) // k.p * k.hp % k.p
    mq = (gmpy2.powmod(c, k.q - 1, k.q2) - 1) // k.q * k.hq % k.q
    return mp + ((mq - mp) * k.p_inv_q % k.q) * k.p


def decrypt_signed(key: PrivateKey, ciphertext: Any) -> Any:
    """Plaintext lifted to ``(-n/2, n/2)``: how signed packed values are read."""
    m = decrypt(key, ciphertext)
    n = key.public.n
    return m - n if m > n // 2 else m


# --- fast encryption -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ObfuscatorTables:
    """Fixed-base tables of ``hs`` mod ``p²`` and ``q²`` (module docstring)."""

    window: int
    digits: int
    tp: tuple[tuple[Any, ...], ...]
    tq: tuple[tuple[Any, ...], ...]

    @classmethod
    def build(
        cls,
        key: PrivateKey,
        *,
        window: int = settings.PAILLIER_TABLE_WINDOW_BITS,
        exponent_bits: int | None = None,
    ) -> ObfuscatorTables:
        if exponent_bits is None:
            exponent_bits = djn_exponent_bits(key.public.bits)
        digits = -(-exponent_bits // window)
        tp = _fixed_base_table(key.hs % key.p2, key.p2, window, digits)
        tq = _fixed_base_table(key.hs % key.q2, key.q2, window, digits)
        return cls(window=window, digits=digits, tp=tp, tq=tq)


def security_bits(key_bits: int) -> int:
    """Symmetric-equivalent strength of an RSA-type modulus (NIST SP 800-57 Part 1, Table 2)."""
    for bits, strength in ((15360, 256), (7680, 192), (3072, 128), (2048, 112)):
        if key_bits >= bits:
            return strength
    return 80


def djn_exponent_bits(key_bits: int) -> int:
    """Bits of the DJN exponent: twice the key's strength, never below the configured floor."""
    return max(settings.PAILLIER_DJN_EXPONENT_BITS, 2 * security_bits(key_bits))


def _fixed_base_table(base: Any, mod: Any, window: int, digits: int) -> tuple[tuple[Any, ...], ...]:
    rows = []
    b = base
    for _ in range(digits):
        row = [mpz(1)]
        for _ in range((1 << window) - 1):
            row.append(row[-1] * b % mod)
        rows.append(tuple(row))
        b = row[-1] * b % mod  # base^(2^window)
    return tuple(rows)


_TABLE_CACHE: dict[tuple[int, int, int], ObfuscatorTables] = {}


def tables_for(
    key: PrivateKey, window: int = settings.PAILLIER_TABLE_WINDOW_BITS
) -> ObfuscatorTables:
    """Per-process cache: a worker builds the tables of a key once and keeps them."""
    exponent_bits = djn_exponent_bits(key.public.bits)
    ident = (hash((int(key.public.n), int(key.hs))), window, exponent_bits)
    tables = _TABLE_CACHE.get(ident)
    if tables is None:
        if len(_TABLE_CACHE) >= 2:  # a job uses one key; never grow without bound
            _TABLE_CACHE.clear()
        tables = ObfuscatorTables.build(key, window=window, exponent_bits=exponent_bits)
        _TABLE_CACHE[ident] = tables
    return tables


def _random_digits(count: int, digits: int, window: int) -> list[list[int]]:
    """Uniform ``window``-bit digits from the OS CSPRNG: ``count`` exponents of ``digits`` each."""
    if not 1 <= window <= 16:
        raise CryptoError("fixed-base window must be 1..16 bits")
    raw = np.frombuffer(os.urandom(count * digits * 2), dtype=np.uint16).reshape(count, digits)
    digits_: list[list[int]] = np.bitwise_and(raw, (1 << window) - 1).tolist()
    return digits_


def obfuscators(key: PrivateKey, tables: ObfuscatorTables, count: int) -> list[Any]:
    """``count`` fresh DJN obfuscators ``hs^x mod n²`` (uniform ``x``), via CRT.

    They do not depend on the plaintexts, so the label holder computes the next tree's while
    the passive parties build histograms; each must be used once (see :func:`encrypt_with`).
    """
    p2, q2 = key.p2, key.q2
    q2_inv = _crt(key).q2_inv_p2
    tp, tq = tables.tp, tables.tq
    out = []
    for ds in _random_digits(count, tables.digits, tables.window):
        rp, rq = tp[0][ds[0]], tq[0][ds[0]]
        for j in range(1, len(ds)):
            d = ds[j]
            rp = rp * tp[j][d] % p2
            rq = rq * tq[j][d] % q2
        out.append(rq + q2 * ((rp - rq) * q2_inv % p2))
    return out


def encrypt_with(
    public: PublicKey, plaintexts: Iterable[Any], obfuscators: Sequence[Any]
) -> list[Any]:
    """``(1 + m·n)·r mod n²`` for signed ``m`` (``|m| < n/2``), one fresh obfuscator ``r`` each.

    ``(1 + m·n)·r = r + n·((m·r) mod n) (mod n²)``: one 2048-bit reduction instead of a
    4096-bit modular multiplication.
    """
    n, n2 = public.n, public.n2
    out = []
    for m, r in zip(plaintexts, obfuscators, strict=True):
        c = r + n * (mpz(m) % n * r % n)
        out.append(c - n2 if c >= n2 else c)
    return out


def encrypt_packed(
    key: PrivateKey, tables: ObfuscatorTables, plaintexts: Sequence[Any]
) -> list[Any]:
    """Encrypt integers (any sign, ``|m| < n/2``) with fresh CRT + fixed-base obfuscators."""
    return encrypt_with(key.public, plaintexts, obfuscators(key, tables, len(plaintexts)))


def encrypt_reference(public: PublicKey, plaintext: Any) -> Any:
    """Textbook encryption ``(1 + m n)·r^n mod n²`` with a uniform ``r``: the slow baseline."""
    n, n2 = public.n, public.n2
    r = _random_below(n - 1) + 1
    return (1 + (mpz(plaintext) % n) * n) % n2 * gmpy2.powmod(r, n, n2) % n2


# --- re-randomisation (module docstring, docs/crypto.md) ---------------------------------------


def rerandomiser_base(key: PrivateKey) -> Any:
    """``g = hs^u mod n²``, ``u`` uniform and prime to ``λ``: a generator of ``<hs>`` to publish."""
    lam = gmpy2.lcm(key.p - 1, key.q - 1)
    while True:
        u = _random_below(lam)
        if gmpy2.gcd(u, lam) == 1:
            return gmpy2.powmod(key.hs, u, key.public.n2)


def check_rerandomiser_base(public: PublicKey, base: int) -> Any:
    """A peer's base, refused unless it is a unit mod ``n²`` other than 1 (``ProtocolError``)."""
    g = mpz(base)
    if not 1 < g < public.n2 or gmpy2.gcd(g, public.n) != 1:
        raise ProtocolError("re-randomisation base is not a unit mod n^2")
    return g


@dataclass(frozen=True)
class RerandomiserTables:
    """Fixed-base tables of a published base ``g`` mod ``n²`` (no factors needed)."""

    n2: Any
    window: int
    digits: int
    table: tuple[tuple[Any, ...], ...]

    @classmethod
    def build(
        cls,
        public: PublicKey,
        base: Any,
        *,
        window: int = settings.PAILLIER_RERANDOMISE_WINDOW_BITS,
    ) -> RerandomiserTables:
        digits = -(-(public.bits + settings.PAILLIER_RERANDOMISE_STAT_BITS) // window)
        table = _fixed_base_table(mpz(base) % public.n2, public.n2, window, digits)
        return cls(n2=public.n2, window=window, digits=digits, table=table)


_RERANDOMISER_CACHE: dict[tuple[int, int], RerandomiserTables] = {}


def rerandomiser_tables(public: PublicKey, base: Any) -> RerandomiserTables:
    """Per-process cache, as :func:`tables_for`: built once per (key, base), at most two kept."""
    ident = (hash((int(public.n), int(base))), settings.PAILLIER_RERANDOMISE_WINDOW_BITS)
    tables = _RERANDOMISER_CACHE.get(ident)
    if tables is None:
        if len(_RERANDOMISER_CACHE) >= 2:
            _RERANDOMISER_CACHE.clear()
        tables = RerandomiserTables.build(public, base)
        _RERANDOMISER_CACHE[ident] = tables
    return tables


def rerandomisers(tables: RerandomiserTables, count: int) -> list[Any]:
    """``count`` fresh encryptions of zero ``g^a mod n²``, ``a`` uniform below ``2^(digits·w)``."""
    n2, rows = tables.n2, tables.table
    out = []
    for ds in _random_digits(count, tables.digits, tables.window):
        acc = rows[0][ds[0]]
        for j in range(1, len(ds)):
            acc = acc * rows[j][ds[j]] % n2
        out.append(acc)
    return out


def rerandomise(tables: RerandomiserTables, ciphertexts: Sequence[Any]) -> list[Any]:
    """The same plaintexts under fresh randomness (one :func:`rerandomisers` each)."""
    n2 = tables.n2
    fresh = rerandomisers(tables, len(ciphertexts))
    return [mpz(c) * z % n2 for c, z in zip(ciphertexts, fresh, strict=True)]


# --- homomorphic sums and packing ------------------------------------------------------------


def slot_bits(precision_bits: int, max_rows: int) -> int:
    """Slot width ``W`` for sums of at most ``max_rows`` values of magnitude ``≤ 2^precision``."""
    return precision_bits + int(max_rows).bit_length() + 1


def slots_per_ciphertext(key_bits: int, slot_width: int) -> int:
    """How many ``(G, H)`` pairs fit one plaintext without overflow (``2kW ≤ bits(n) - 1``)."""
    k = (key_bits - 1) // (2 * slot_width)
    if k < 1:
        raise CryptoError(f"a {key_bits}-bit key cannot hold two {slot_width}-bit slots")
    return k


def pack_row(grad: int, hess: int, slot_width: int) -> int:
    """One row's plaintext ``g·2^W + h``."""
    return (int(grad) << slot_width) + int(hess)


def pack_ciphertexts(n2: Any, ciphertexts: Sequence[Any], shift_bits: int) -> Any:
    """``Σ_j 2^(shift·j)·m_j`` under encryption, by Horner: ``c ← c^(2^shift)·c_j``.

    ``ciphertexts[0]`` lands in the lowest slot.
    """
    factor = mpz(1) << shift_bits
    acc = mpz(ciphertexts[-1])
    for c in reversed(ciphertexts[:-1]):
        acc = gmpy2.powmod(acc, factor, n2) * c % n2
    return acc


def unpack_slots(value: Any, slot_width: int, count: int) -> list[int]:
    """The ``count`` balanced base-``2^W`` digits of a signed integer, lowest first."""
    v = mpz(value)
    mask, half, full = (mpz(1) << slot_width) - 1, mpz(1) << (slot_width - 1), mpz(1) << slot_width
    out = []
    for _ in range(count):
        d = v & mask
        if d >= half:
            d -= full
        out.append(int(d))
        v = (v - d) >> slot_width
    if v != 0:
        raise CryptoError("packed plaintext has more slots than expected (overflow)")
    return out
