"""Paillier micro-benchmarks behind the choices in fedsilo/crypto/paillier.py.

    python bench/bench_paillier.py [--key-bits 2048] [--rows 2000]

CPU time per operation (``time.process_time``: the machine is shared, CPU time is what the
choice costs), one process. Rows: ``phe`` encryption (its float encoding included), textbook
``(1+mn)·r^n``, CRT with a full ``r^n``, the DJN fixed-base path at several window sizes (table
build time and size), spending a precomputed obfuscator, decryption (``phe`` and ours), the
passive party's ciphertext multiplication, what packing saves on the way back, and the passive
party's re-randomisation of a reply (fixed base mod ``n²``) beside a textbook uniform ``r^n``.
"""

from __future__ import annotations

import argparse
import time

import gmpy2
from gmpy2 import mpz

from fedsilo.crypto import paillier
from fedsilo.crypto.paillier import ObfuscatorTables, generate_keypair


def per_op(fn, count: int) -> float:
    """CPU microseconds per call of ``fn(i)``."""
    start = time.process_time()
    for i in range(count):
        fn(i)
    return (time.process_time() - start) / count * 1e6


def rerandomise_rows(pub, key, count: int) -> list[tuple[str, float, str]]:
    """A passive party's encryption of zero: published base, fixed-base tables (no CRT)."""
    base = paillier.rerandomiser_base(key)
    rows = []
    for w in (6, 8, 10):
        start = time.process_time()
        tables = paillier.RerandomiserTables.build(pub, base, window=w)
        build = time.process_time() - start
        size = tables.digits * (1 << w) * (pub.bits // 4 + 40) / 2**20
        us = per_op(lambda i, t=tables: paillier.rerandomisers(t, count), 1) / count
        rows.append(
            (
                f"re-randomiser g^a, {tables.digits * w}-bit a, w={w}",
                us,
                f"tables ~{size:.0f} MiB, built in {build:.2f} s",
            )
        )
    r = paillier._random_below(pub.n)
    full = per_op(lambda i: gmpy2.powmod(r + i, pub.n, pub.n2), count)
    rows.append(("re-randomiser r^n mod n^2, uniform r", full, "textbook, any key holder"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--key-bits", type=int, default=2048)
    ap.add_argument("--rows", type=int, default=2000)
    args = ap.parse_args()
    pub, key = generate_keypair(args.key_bits)
    phe_pub, phe_priv = key.to_phe()
    n, n2 = pub.n, pub.n2
    rows, slow = args.rows, max(5, args.rows // 100)
    out: list[tuple[str, float, str]] = []

    out.append(("phe.encrypt(float)", per_op(lambda i: phe_pub.encrypt(i * 0.5), slow), ""))
    out.append(
        (
            "textbook (1+mn) r^n mod n^2",
            per_op(lambda i: paillier.encrypt_reference(pub, i), slow),
            "",
        )
    )

    def crt_full(i: int) -> None:
        r = paillier._random_below(n)
        gmpy2.powmod(r, n, key.p2), gmpy2.powmod(r, n, key.q2)

    out.append(("CRT, full r^n mod p^2, q^2", per_op(crt_full, slow), ""))
    exp_bits = paillier.djn_exponent_bits(pub.bits)
    for w in (8, 10, 12, 14):
        start = time.process_time()
        tables = ObfuscatorTables.build(key, window=w, exponent_bits=exp_bits)
        build = time.process_time() - start
        size = tables.digits * (1 << w) * 2 * (pub.bits // 8 + 40) / 2**20
        us = per_op(lambda i, t=tables: paillier.obfuscators(key, t, rows), 1) / rows
        out.append(
            (
                f"DJN fixed base, {exp_bits}-bit x, w={w}",
                us,
                f"{tables.digits} digits, tables ~{size:.0f} MiB, built in {build:.2f} s",
            )
        )
    tables = ObfuscatorTables.build(key)
    obf = paillier.obfuscators(key, tables, rows)
    out.append(
        (
            "encrypt with precomputed obfuscator",
            per_op(lambda i: paillier.encrypt_with(pub, [i], [obf[i]]), rows),
            "critical path",
        )
    )
    cts = paillier.encrypt_with(pub, list(range(rows)), obf)
    out.append(("phe raw_decrypt", per_op(lambda i: phe_priv.raw_decrypt(int(cts[i])), slow), ""))
    out.append(("fedsilo decrypt (CRT)", per_op(lambda i: paillier.decrypt(key, cts[i]), slow), ""))
    acc = [mpz(1)]

    def mulmod(i: int) -> None:
        acc[0] = acc[0] * cts[i] % n2

    out.append(
        ("ciphertext product mod n^2 (bin sum)", per_op(mulmod, rows), "passive, per row x feature")
    )
    w = paillier.slot_bits(30, 24_000)
    k = paillier.slots_per_ciphertext(pub.bits, w)
    horner = per_op(lambda i: gmpy2.powmod(cts[i], mpz(1) << (2 * w), n2), slow * 4)
    out.append(
        (
            f"Horner step (2W = {2 * w} squarings)",
            horner,
            f"packs {k} bins per ciphertext: {k} decryptions become 1",
        )
    )

    out += rerandomise_rows(pub, key, slow)

    print(f"{args.key_bits}-bit key, CPU microseconds per operation")
    for name, us, note in out:
        print(f"{name:42}{us:>12.1f}  {note}")


if __name__ == "__main__":
    main()
