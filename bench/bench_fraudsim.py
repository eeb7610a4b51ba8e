"""The card-fraud simulator at the handbook's scale, from one run on this machine.

    python bench/bench_fraudsim.py                  # 1M transactions, + writing both CSVs
    python bench/bench_fraudsim.py --rows 100000 --no-write

Prints the time of each phase (profiles and terminals within reach, transactions, frauds,
features, ids) and of writing the issuer's and acquirer's CSVs, the fraud rate and each
scenario's share beside the handbook's (1,754,155 transactions over 183 days: 0.84 % fraud).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from fedsilo.fraudsim import SimConfig, simulate, split_parties, write_party_csvs
from fedsilo.fraudsim.frauds import SCENARIOS


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-write", action="store_true", help="skip writing the CSVs")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average at start {os.getloadavg()[0]:.2f}")

    config = SimConfig.for_rows(args.rows, seed=args.seed)
    start = time.perf_counter()
    sim = simulate(config)
    simulate_s = time.perf_counter() - start
    start = time.perf_counter()
    parties = split_parties(sim)
    split_s = time.perf_counter() - start

    tx = sim.transactions
    shares = np.bincount(tx.scenario, minlength=len(SCENARIOS) + 1) / len(sim)
    print(
        f"\n{len(sim):,} transactions over {config.n_days} days, {config.n_customers:,} "
        f"customers, {config.n_terminals:,} terminals (scale {config.scale:g})"
    )
    print(f"{'simulate (profiles .. features, ids)':40}{simulate_s:>8.2f} s")
    print(f"{'split into issuer / acquirer':40}{split_s:>8.2f} s")
    if not args.no_write:
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            paths = write_party_csvs(parties, Path(folder))
            write_s = time.perf_counter() - start
            size = sum(p.stat().st_size for p in paths) / 2**20
        print(f"{'write both CSVs':40}{write_s:>8.2f} s  ({size:.0f} MiB)")
    print(f"\nfraud rate {sim.fraud_rate:.3%} (handbook: 0.84 %)")
    for k, name in SCENARIOS.items():
        print(f"  scenario {k} ({name}): {shares[k]:.3%} of transactions")
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
