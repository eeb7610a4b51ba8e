"""A card-transaction fraud simulator: the design of the "Reproducible Machine Learning for Credit
Card Fraud Detection - Practical Handbook" (Le Borgne, Siblini, Lebichot, Bontempi; chapter
"Simulated data"), written anew in vectorised numpy, and split vertically between the card issuer
and the acquirer that hold its columns in real life.

``simulate(config)`` draws customers, terminals and transactions, injects the three fraud
scenarios and derives the handbook's features; ``split_parties`` cuts the result into the
issuer's and the acquirer's tables; ``write_party_csvs`` writes them. The design, what differs
from the handbook and what each party holds: ``docs/fraud.md``.
"""

from fedsilo.fraudsim.config import SimConfig
from fedsilo.fraudsim.features import (
    CUSTOMER_WINDOWS,
    TERMINAL_DELAY_DAYS,
    TERMINAL_WINDOWS,
    customer_windows,
    terminal_windows,
)
from fedsilo.fraudsim.parties import (
    ACQUIRER_FEATURES,
    ISSUER_FEATURES,
    ISSUER_LABEL,
    TX_ID,
    PartyTable,
    split_parties,
    write_party_csvs,
)
from fedsilo.fraudsim.simulate import Simulation, simulate

__all__ = [
    "ACQUIRER_FEATURES",
    "CUSTOMER_WINDOWS",
    "ISSUER_FEATURES",
    "ISSUER_LABEL",
    "TERMINAL_DELAY_DAYS",
    "TERMINAL_WINDOWS",
    "TX_ID",
    "PartyTable",
    "SimConfig",
    "Simulation",
    "customer_windows",
    "simulate",
    "split_parties",
    "terminal_windows",
    "write_party_csvs",
]
