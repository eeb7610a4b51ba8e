"""The simulator's parameters: the handbook's world, and how it is scaled to a number of rows."""

from __future__ import annotations

import math
from dataclasses import dataclass

from fedsilo.errors import ConfigError

__all__ = ["HANDBOOK_CUSTOMERS", "HANDBOOK_TERMINALS", "SimConfig"]

#: the handbook's world: 5,000 customers, 10,000 terminals on a 100 x 100 square, radius 5
HANDBOOK_CUSTOMERS = 5_000
HANDBOOK_TERMINALS = 10_000
HANDBOOK_SIDE = 100.0
#: transactions a customer makes per day on average: E[U(0, 4)] = 2, times the share of
#: times N(12 h, 20,000 s) that fall inside the day (0.969); the handbook's data show 1.92
TX_PER_CUSTOMER_DAY = 1.92
#: shortest simulation when sized by rows: the 30-day windows, the 7-day delay and the 28-day
#: compromises all fit well inside it
MIN_DAYS = 56
#: longest simulation when sized by rows (the handbook's six months); beyond it the world grows
MAX_DAYS = 183


@dataclass(frozen=True, kw_only=True)
class SimConfig:
    """Everything that decides a simulation; the same config (seed included) gives the same data.

    ``scale`` multiplies the handbook's population (customers, terminals, the area they live on,
    and the terminals and customers compromised per day), so terminal density, the number of
    terminals within a customer's radius and the fraud rate stay the handbook's at any size.
    ``scale=1`` is the handbook's world exactly.
    """

    seed: int = 0
    n_days: int = 183
    scale: float = 1.0
    #: the handbook starts on Sunday 2018-04-01; weekends and nights are counted from it
    start_date: str = "2018-04-01"
    radius: float = 5.0
    #: scenario 1: every transaction above this amount is fraud
    fraud_amount_threshold: float = 220.0
    #: scenario 2: terminals compromised per day (at scale 1), and for how many days
    terminals_per_day: float = 2.0
    terminal_days: int = 28
    #: scenario 3: customers compromised per day (at scale 1), for how many days, one in how
    #: many of their transactions becomes fraud, and the factor applied to those amounts
    customers_per_day: float = 3.0
    customer_days: int = 14
    customer_fraud_every: int = 3
    customer_amount_factor: int = 5

    def __post_init__(self) -> None:
        if self.n_days < 1:
            raise ConfigError(f"fraud simulation: n_days must be at least 1, got {self.n_days}")
        if not (self.scale > 0 and math.isfinite(self.scale)):
            raise ConfigError(f"fraud simulation: scale must be positive, got {self.scale}")
        if self.n_customers < 1 or self.n_terminals < 1:
            raise ConfigError(f"fraud simulation: scale {self.scale:g} leaves nobody in the world")

    @property
    def n_customers(self) -> int:
        return round(HANDBOOK_CUSTOMERS * self.scale)

    @property
    def n_terminals(self) -> int:
        return round(HANDBOOK_TERMINALS * self.scale)

    @property
    def side(self) -> float:
        """Side of the square customers and terminals live on (density kept at any scale)."""
        return HANDBOOK_SIDE * math.sqrt(self.scale)

    @classmethod
    def for_rows(cls, rows: int, *, seed: int = 0) -> SimConfig:
        """A world that makes about ``rows`` transactions: the handbook's population over as
        many days as that takes (1M rows: 104 days), fewer people over ``MIN_DAYS`` below, more
        people over ``MAX_DAYS`` above."""
        if rows < 1_000:
            raise ConfigError(f"fraud simulation: ask for at least 1000 rows, got {rows}")
        per_day = HANDBOOK_CUSTOMERS * TX_PER_CUSTOMER_DAY
        days = round(rows / per_day)
        if MIN_DAYS <= days <= MAX_DAYS:
            return cls(seed=seed, n_days=days)
        days = min(MAX_DAYS, max(MIN_DAYS, days))
        return cls(seed=seed, n_days=days, scale=rows / (per_day * days))
