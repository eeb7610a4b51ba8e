"""Customer and terminal profiles, and which terminals each customer uses (handbook, steps 1-3).

A customer lives at a point of the square and has a mean amount m ~ U(5, 100), a standard
deviation m / 2 and a mean number of transactions per day ~ U(0, 4); a terminal is a point.
A customer pays at the terminals within ``radius`` of home.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fedsilo.fraudsim.config import SimConfig

__all__ = ["Customers", "Terminals", "draw_customers", "draw_terminals", "terminals_within"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: customers whose distances to the terminals are computed at once (bounds memory to a few MB)
_CHUNK_CUSTOMERS = 256


@dataclass(frozen=True)
class Customers:
    x: FloatArray
    y: FloatArray
    mean_amount: FloatArray
    std_amount: FloatArray
    mean_tx_per_day: FloatArray


@dataclass(frozen=True)
class Terminals:
    x: FloatArray
    y: FloatArray


def draw_customers(config: SimConfig, rng: np.random.Generator) -> Customers:
    n = config.n_customers
    x, y = rng.uniform(0.0, config.side, n), rng.uniform(0.0, config.side, n)
    mean_amount = rng.uniform(5.0, 100.0, n)
    return Customers(x, y, mean_amount, mean_amount / 2.0, rng.uniform(0.0, 4.0, n))


def draw_terminals(config: SimConfig, rng: np.random.Generator) -> Terminals:
    n = config.n_terminals
    return Terminals(rng.uniform(0.0, config.side, n), rng.uniform(0.0, config.side, n))


def terminals_within(
    customers: Customers, terminals: Terminals, radius: float
) -> tuple[IntArray, IntArray]:
    """The terminals strictly within ``radius`` of each customer, as CSR ``(indptr, indices)``:
    customer ``c`` uses ``indices[indptr[c]:indptr[c + 1]]`` (ascending terminal numbers).

    Only terminals in the x-band of a chunk of customers are measured, so the work grows with
    the number of neighbours, not with customers x terminals.
    """
    by_x = np.argsort(terminals.x, kind="stable")
    tx, ty = terminals.x[by_x], terminals.y[by_x]
    order = np.argsort(customers.x, kind="stable")
    degree = np.zeros(customers.x.size, dtype=np.int64)
    found: list[tuple[IntArray, IntArray]] = []
    for start in range(0, order.size, _CHUNK_CUSTOMERS):
        chunk = order[start : start + _CHUNK_CUSTOMERS]
        cx, cy = customers.x[chunk], customers.y[chunk]
        lo, hi = np.searchsorted(tx, [cx.min() - radius, cx.max() + radius], side="left")
        d2 = (cx[:, None] - tx[None, lo:hi]) ** 2 + (cy[:, None] - ty[None, lo:hi]) ** 2
        rows, cols = np.nonzero(np.sqrt(d2) < radius)
        found.append((chunk[rows], by_x[lo + cols]))
        degree[chunk] = np.bincount(rows, minlength=chunk.size)
    owner = np.concatenate([f[0] for f in found]) if found else np.empty(0, np.int64)
    term = np.concatenate([f[1] for f in found]) if found else np.empty(0, np.int64)
    sort = np.lexsort((term, owner))
    indptr = np.concatenate([[0], np.cumsum(degree)]).astype(np.int64)
    return indptr, term[sort].astype(np.int64)
