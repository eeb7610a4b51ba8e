"""WOE / IV benchmark: the passive silo's characteristics over encrypted labels, beside the same
computation on the pooled data.

    python bench/bench_woe.py [--rows 25000] [--key-bits 2048] [--max-bins 10] [--monotonic]

Data: default credit, ``default_credit_hetero_{guest,host}`` (tests/data/README.md): the label
holder's labels, the passive silo's 10 characteristics (LIMIT_BAL, SEX, EDUCATION, MARRIAGE, AGE,
PAY_0, PAY_2..PAY_5; SEX, EDUCATION and MARRIAGE binned by value), first ``--rows`` rows. Both
parties run in this process (``fedsilo.protocols.woe.local``), every message encoded and decoded
as on the wire; the shared process pool is warmed first (a silo node's pool is long-lived).

``federated s`` is the whole step's wall time (``cpu s``: this process and the pool's workers,
which other people's load does not move): key generation, encrypting every label, the
passive's per-bin sums (packed, re-randomised), decryption and the tables. ``pooled s`` is the
same WOE / IV with the same bin edges computed on the pooled columns in numpy
(:func:`fedsilo.ml.woe.woe_table`). The check column says whether every released bin's event
and row counts are equal (they must be: the protocol is exact).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from bench_lr import _cpu_seconds  # CPU of this process and its pool workers

from fedsilo import parallel
from fedsilo.ml.woe import woe_table
from fedsilo.protocols.woe.local import run_woe
from fedsilo.protocols.woe.parties import LabelHolder, PassiveParty, WoeSettings

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"  # bundled: tests/data/README.md
HOST = [
    "LIMIT_BAL",
    "SEX",
    "EDUCATION",
    "MARRIAGE",
    "AGE",
    "PAY_0",
    "PAY_2",
    "PAY_3",
    "PAY_4",
    "PAY_5",
]
CATEGORICAL = frozenset({"SEX", "EDUCATION", "MARRIAGE"})


def _load(name: str) -> np.ndarray:
    return np.loadtxt(DATA / f"{name}.csv.gz", delimiter=",", skiprows=1)


def _pooled(passive: PassiveParty, x: np.ndarray, y: np.ndarray) -> list:
    """WOE / IV of the same bins on the pooled columns (labels and features in one place)."""
    tables = []
    for j, char in enumerate(passive.chars):
        idx = char.bin_index(x[:, j])
        ok = idx >= 0
        events = np.bincount(idx[ok], weights=y[ok], minlength=char.n_bins).astype(np.int64)
        rows = np.bincount(idx[ok], minlength=char.n_bins)
        released = np.ones(char.n_bins, bool)
        released[list(char.withheld)] = False
        tables.append(woe_table(events, rows, int(y.sum()), len(y), released=released))
    return tables


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=25_000)
    ap.add_argument("--key-bits", type=int, default=2048)
    ap.add_argument("--max-bins", type=int, default=10)
    ap.add_argument("--monotonic", action="store_true")
    args = ap.parse_args()
    guest, host = _load("default_credit_hetero_guest"), _load("default_credit_hetero_host")
    y, x = guest[: args.rows, 1], host[: args.rows, 1:]
    cfg = WoeSettings(max_bins=args.max_bins, monotonic=args.monotonic, categorical=CATEGORICAL)
    parallel.map_chunks(abs, [-1, -2, -3, -4])  # warm the pool (spawn start-up is one-off)
    insecure = args.key_bits if args.key_bits < 2048 else None

    start, cpu = time.perf_counter(), _cpu_seconds()
    holder = LabelHolder(
        np.empty((len(y), 0)),
        y,
        feature_names=[],
        settings_=cfg,
        passives=["bureau"],
        party="bank",
        key_bits=args.key_bits,
        release_iv=True,
        release_table=True,
        insecure_min_key_bits=insecure,
    )
    passive = PassiveParty(
        x, feature_names=HOST, settings_=cfg, party="bureau", insecure_min_key_bits=insecure
    )
    run_woe(holder, [passive])
    federated, fed_cpu = time.perf_counter() - start, _cpu_seconds() - cpu

    start = time.perf_counter()
    pooled = _pooled(passive, x, y)
    pooled_s = time.perf_counter() - start

    fed = holder.passive_tables["bureau"]
    exact = all(
        np.array_equal(a.events[a.rows > 0], b.events[a.rows > 0])
        and np.array_equal(a.rows[a.rows > 0], b.rows[a.rows > 0])
        for a, b in zip(fed, pooled, strict=True)
    )
    print(
        f"WOE / IV, {len(HOST)} passive characteristics, {len(y):,} rows, {args.key_bits}-bit key"
    )
    print("| characteristic | bins | IV federated | IV pooled |")
    print("|---|---:|---:|---:|")
    for name, a, b in zip(HOST, fed, pooled, strict=True):
        print(f"| {name} | {len(a.rows)} | {a.iv:.6f} | {b.iv:.6f} |")
    print()
    print("| federated s | federated cpu s | pooled s | counts exact |")
    print("|---:|---:|---:|---|")
    print(f"| {federated:.2f} | {fed_cpu:.2f} | {pooled_s:.4f} | {exact} |")


if __name__ == "__main__":
    main()
