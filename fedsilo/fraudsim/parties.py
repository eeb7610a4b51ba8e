"""The vertical split: who holds which column of a card transaction, and the CSV files.

- The **issuer** (the cardholder's bank) authorises every payment of its cards: it sees the
  amount and the time, keeps each customer's spending history, and learns which transactions
  were fraud (the cardholder disputes them). It holds the id, the amount, the time flags, the
  customer spending windows and the label.
- The **acquirer** / payment processor (the merchant's bank) runs the terminals: it keeps each
  terminal's history and receives the chargebacks and fraud reports for its terminals' payments,
  days or weeks after the fact, hence the 7-day delay of the terminal risk windows. It holds the
  id and the terminal risk windows, no label.

Both tables are keyed by the same opaque transaction id and written in id order (a random
order), so neither file's row order says anything about time.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from fedsilo.errors import DataError
from fedsilo.fraudsim.features import CUSTOMER_WINDOWS, TERMINAL_WINDOWS
from fedsilo.fraudsim.simulate import Simulation

__all__ = [
    "ACQUIRER_FEATURES",
    "ISSUER_FEATURES",
    "ISSUER_LABEL",
    "TX_ID",
    "PartyTable",
    "split_parties",
    "write_party_csvs",
]

TX_ID = "tx_id"
ISSUER_LABEL = "tx_fraud"
ISSUER_FEATURES: tuple[str, ...] = (
    "tx_amount",
    "tx_during_weekend",
    "tx_during_night",
    *(f"customer_{k}_{w}day" for w in CUSTOMER_WINDOWS for k in ("nb_tx", "avg_amount")),
)
ACQUIRER_FEATURES: tuple[str, ...] = tuple(
    f"terminal_{k}_{w}day" for w in TERMINAL_WINDOWS for k in ("nb_tx", "risk")
)
#: columns written as integers (counts and flags), the rest with the shortest exact float text
_INTEGER = {"tx_during_weekend", "tx_during_night", ISSUER_LABEL} | {
    c for c in ISSUER_FEATURES + ACQUIRER_FEATURES if "_nb_tx_" in c
}


@dataclass(frozen=True)
class PartyTable:
    """One party's table: ids in id order and its columns in the same order."""

    party: str
    ids: npt.NDArray[np.str_]
    columns: dict[str, np.ndarray]
    label: str | None = None

    def __len__(self) -> int:
        return int(self.ids.size)


def split_parties(sim: Simulation) -> dict[str, PartyTable]:
    """``{"issuer": ..., "acquirer": ...}``, both sorted by transaction id."""
    order = np.lexsort(sim.id_sort_keys)
    ids = sim.tx_id[order]
    issuer = {c: sim.features[c][order] for c in ISSUER_FEATURES}
    issuer[ISSUER_LABEL] = sim.transactions.fraud[order].astype(np.int64)
    acquirer = {c: sim.features[c][order] for c in ACQUIRER_FEATURES}
    return {
        "issuer": PartyTable("issuer", ids, issuer, ISSUER_LABEL),
        "acquirer": PartyTable("acquirer", ids, acquirer),
    }


def _text(name: str, values: np.ndarray) -> list[str]:
    if name in _INTEGER:
        return list(map(str, values.astype(np.int64).tolist()))
    return list(map(repr, values.astype(np.float64).tolist()))


def write_party_csvs(tables: dict[str, PartyTable], out: Path, *, gz: bool = False) -> list[Path]:
    """Write ``<party>.csv`` (or ``.csv.gz``) per table into ``out``; the paths written.

    Each file is written next to its final name and renamed into place, so an interrupted run
    leaves no half-written CSV. Same tables, same bytes (gzip without a timestamp).
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"{out}: cannot create the folder ({err.strerror})") from err
    written = []
    for party, table in tables.items():
        path = out / f"{party}.csv{'.gz' if gz else ''}"
        # ids are hex and values numbers: nothing to quote, so rows are joined directly
        cols = [table.ids.tolist(), *(_text(n, v) for n, v in table.columns.items())]
        lines = [",".join([TX_ID, *table.columns])]
        lines += map(",".join, zip(*cols, strict=True))
        data = ("\n".join(lines) + "\n").encode("ascii")
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            tmp.write_bytes(gzip.compress(data, mtime=0) if gz else data)
            tmp.replace(path)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise DataError(f"{path}: cannot write ({err.strerror})") from err
        written.append(path)
    return written
