"""The handbook's three fraud scenarios (step 5), applied in its order; a later one overwrites
an earlier one's scenario number.

1. Every amount above the threshold (220) is fraud.
2. Compromised terminals: each day some terminals are drawn; all their transactions of that day
   and the next 27 are fraud (a skimmed terminal).
3. Compromised cards: each day some customers are drawn; over that day and the next 13, a third
   of their transactions are fraud and their amounts five times larger (a stolen card number
   used for higher-value purchases).

At scale 1 the handbook's 2 terminals and 3 customers are drawn every day; at another scale the
day's number follows ``floor(rate * (d + 1)) - floor(rate * d)``, which keeps the rate per day
exact on average (and is exactly 2 and 3 at scale 1).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from fedsilo.fraudsim.config import SimConfig
from fedsilo.fraudsim.transactions import Transactions

__all__ = ["SCENARIOS", "add_frauds", "daily_counts"]

IntArray = npt.NDArray[np.int64]

#: scenario number -> what it simulates
SCENARIOS = {1: "amount above threshold", 2: "compromised terminal", 3: "compromised card"}


def daily_counts(rate: float, n_days: int) -> list[int]:
    """How many are drawn on each day for ``rate`` per day on average (exact when integer)."""
    return [math.floor(rate * (d + 1) + 1e-9) - math.floor(rate * d + 1e-9) for d in range(n_days)]


def add_frauds(tx: Transactions, config: SimConfig, rng: np.random.Generator) -> None:
    """Label ``tx`` in place (and scale scenario 3's amounts)."""
    big = tx.cents > round(config.fraud_amount_threshold * 100)
    tx.fraud[big], tx.scenario[big] = 1, 1
    _compromised_terminals(tx, config, rng)
    _compromised_customers(tx, config, rng)


def _compromised_terminals(tx: Transactions, config: SimConfig, rng: np.random.Generator) -> None:
    days = config.n_days
    keys: list[IntArray] = []
    for day, k in enumerate(daily_counts(config.terminals_per_day * config.scale, days)):
        if k:
            chosen = rng.choice(config.n_terminals, size=k, replace=False).astype(np.int64)
            span = np.arange(day, day + config.terminal_days, dtype=np.int64)
            keys.append((chosen[:, None] * (days + config.terminal_days) + span[None, :]).ravel())
    if keys:
        hit = np.isin(tx.terminal * (days + config.terminal_days) + tx.day, np.concatenate(keys))
        tx.fraud[hit], tx.scenario[hit] = 1, 2


def _compromised_customers(tx: Transactions, config: SimConfig, rng: np.random.Generator) -> None:
    by_customer = np.lexsort((tx.seconds, tx.customer))
    sorted_customer, sorted_day = tx.customer[by_customer], tx.day[by_customer]
    starts = np.searchsorted(sorted_customer, np.arange(config.n_customers + 1))
    for day, k in enumerate(daily_counts(config.customers_per_day * config.scale, config.n_days)):
        if not k:
            continue
        for c in rng.choice(config.n_customers, size=k, replace=False):
            lo, hi = starts[c], starts[c + 1]
            days = sorted_day[lo:hi]
            first = lo + np.searchsorted(days, day, side="left")
            last = lo + np.searchsorted(days, day + config.customer_days, side="left")
            n_fraud = int(last - first) // config.customer_fraud_every
            if n_fraud:
                picked = by_customer[first + rng.choice(last - first, n_fraud, replace=False)]
                tx.cents[picked] *= config.customer_amount_factor
                tx.fraud[picked], tx.scenario[picked] = 1, 3
