"""One simulation: profiles -> transactions -> frauds -> features, from one seed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fedsilo.fraudsim.config import SimConfig
from fedsilo.fraudsim.features import customer_windows, terminal_windows, time_flags
from fedsilo.fraudsim.frauds import add_frauds
from fedsilo.fraudsim.profiles import (
    Customers,
    Terminals,
    draw_customers,
    draw_terminals,
    terminals_within,
)
from fedsilo.fraudsim.transactions import Transactions, draw_transactions

__all__ = ["Simulation", "simulate"]

#: bytes of a transaction id: 80 random bits, so a million ids collide with odds below 1e-12
_ID_BYTES = 10
_HEX = np.array([f"{i:02x}" for i in range(256)], dtype="S2")


@dataclass
class Simulation:
    """The simulated world and its transactions, in time order, with every feature."""

    config: SimConfig
    customers: Customers
    terminals: Terminals
    transactions: Transactions
    #: opaque, unique transaction ids (random hex, unrelated to time or row order)
    tx_id: npt.NDArray[np.str_]
    features: dict[str, npt.NDArray[np.float64]]
    #: integer keys (least significant first) that sort rows as ``tx_id`` sorts, for
    #: ``np.lexsort``: sorting 1M strings directly takes seconds
    id_sort_keys: tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]

    def __len__(self) -> int:
        return len(self.transactions)

    @property
    def fraud_rate(self) -> float:
        return float(self.transactions.fraud.mean()) if len(self) else 0.0


def transaction_ids(
    n: int, rng: np.random.Generator
) -> tuple[npt.NDArray[np.str_], tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]]:
    """``n`` distinct random hex ids and their sort keys (hex text sorts as its bytes do);
    drawn again in the (never seen) event of a collision."""
    while True:
        raw = rng.integers(0, 256, size=(n, _ID_BYTES), dtype=np.uint8)
        high = raw[:, :8].copy().view(">u8").ravel().astype(np.uint64)
        low = raw[:, 8:].copy().view(">u2").ravel().astype(np.uint64)
        order = np.lexsort((low, high))
        same = (np.diff(high[order]) == 0) & (np.diff(low[order]) == 0)
        if not same.any():
            ids = _HEX[raw].view(f"S{2 * _ID_BYTES}").ravel().astype(f"U{2 * _ID_BYTES}")
            return ids, (low, high)


def simulate(config: SimConfig) -> Simulation:
    """Draw the world of ``config``; the same config always gives the same simulation.

    Each part draws from its own stream of the seed, so changing, say, the fraud parameters
    leaves the customers, terminals and genuine transactions as they were.
    """
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(config.seed).spawn(5)]
    customers = draw_customers(config, streams[0])
    terminals = draw_terminals(config, streams[1])
    indptr, reachable = terminals_within(customers, terminals, config.radius)
    tx = draw_transactions(customers, indptr, reachable, config.n_days, streams[2])
    add_frauds(tx, config, streams[3])
    features = {
        "tx_amount": tx.cents / 100.0,
        **{k: v.astype(np.float64) for k, v in time_flags(tx.seconds, config.start_date).items()},
        **customer_windows(tx),
        **terminal_windows(tx),
    }
    ids, keys = transaction_ids(len(tx), streams[4])
    return Simulation(config, customers, terminals, tx, ids, features, keys)
