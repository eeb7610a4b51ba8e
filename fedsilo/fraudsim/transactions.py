"""Genuine transactions over the days (handbook, step 4), drawn for all customers at once.

Each customer makes Poisson(mean_tx_per_day) transactions a day, at a time ~ N(12 h, 20,000 s)
(times outside the day are dropped, as the handbook does), for an amount ~ N(mean, std) (a
negative draw is replaced by U(0, 2 mean)), rounded to the cent, at one of the terminals within
its radius, each equally likely. A customer with no terminal within reach makes none.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fedsilo.fraudsim.profiles import Customers

__all__ = ["DAY_SECONDS", "Transactions", "draw_transactions"]

IntArray = npt.NDArray[np.int64]

DAY_SECONDS = 86_400
_TIME_MEAN_S, _TIME_STD_S = DAY_SECONDS / 2, 20_000.0


@dataclass
class Transactions:
    """One entry per transaction, in time order (ties: in the order they were drawn).

    Amounts are whole cents, so sums over windows are exact; ``fraud``/``scenario`` start at 0.
    """

    seconds: IntArray  # since the start date's midnight
    customer: IntArray
    terminal: IntArray
    cents: IntArray
    fraud: npt.NDArray[np.int8]
    scenario: npt.NDArray[np.int8]

    @property
    def day(self) -> IntArray:
        return self.seconds // DAY_SECONDS

    def __len__(self) -> int:
        return int(self.seconds.size)


def draw_transactions(
    customers: Customers,
    indptr: IntArray,
    terminals_of: IntArray,
    n_days: int,
    rng: np.random.Generator,
) -> Transactions:
    counts = rng.poisson(customers.mean_tx_per_day[:, None], size=(customers.x.size, n_days))
    cell = np.repeat(np.arange(counts.size, dtype=np.int64), counts.ravel())
    customer, day = cell // n_days, cell % n_days
    time = rng.normal(_TIME_MEAN_S, _TIME_STD_S, cell.size).astype(np.int64)  # truncates as int()
    mean, std = customers.mean_amount[customer], customers.std_amount[customer]
    amount = rng.normal(mean, std)
    negative = amount < 0
    amount[negative] = rng.uniform(0.0, 2.0 * mean[negative])
    pick = rng.random(cell.size)
    degree = np.diff(indptr)[customer]
    keep = (time > 0) & (time < DAY_SECONDS) & (degree > 0)
    customer, day, time, amount = customer[keep], day[keep], time[keep], amount[keep]
    slot = np.minimum((pick[keep] * degree[keep]).astype(np.int64), degree[keep] - 1)
    seconds = day * DAY_SECONDS + time
    order = np.argsort(seconds, kind="stable")
    n = int(order.size)
    return Transactions(
        seconds=seconds[order],
        customer=customer[order],
        terminal=terminals_of[indptr[customer] + slot][order],
        cents=np.rint(amount[order] * 100.0).astype(np.int64),
        fraud=np.zeros(n, dtype=np.int8),
        scenario=np.zeros(n, dtype=np.int8),
    )
