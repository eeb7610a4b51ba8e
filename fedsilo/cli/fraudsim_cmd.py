"""`fedsilo fraudsim`: simulate card transactions and write the issuer's and acquirer's CSVs."""

from __future__ import annotations

import argparse
import time

import numpy as np

from fedsilo.fraudsim import SimConfig, simulate, split_parties, write_party_csvs
from fedsilo.fraudsim.frauds import SCENARIOS

__all__ = ["fraudsim"]


def fraudsim(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    config = SimConfig.for_rows(args.rows, seed=args.seed)
    sim = simulate(config)
    paths = write_party_csvs(split_parties(sim), args.out, gz=args.gzip)
    shares = np.bincount(sim.transactions.scenario, minlength=len(SCENARIOS) + 1) / max(len(sim), 1)
    print(
        f"{len(sim)} transactions over {config.n_days} days, {config.n_customers} customers, "
        f"{config.n_terminals} terminals; fraud {sim.fraud_rate:.3%} ("
        + ", ".join(f"{name} {shares[k]:.3%}" for k, name in SCENARIOS.items())
        + f") in {time.perf_counter() - started:.1f} s"
    )
    for path in paths:
        print(f"wrote {path}")
    return 0
