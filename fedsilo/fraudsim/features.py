"""The handbook's feature transformations (chapter "Baseline feature transformation").

- ``tx_during_weekend``: Saturday or Sunday; ``tx_during_night``: before 07:00 (hour <= 6).
- Customer spending windows, 1, 7 and 30 days: the customer's number of transactions and their
  average amount over ``(t - w, t]``, this transaction included (it is the issuer's own data).
- Terminal risk windows, 1, 7 and 30 days, ending 7 days before the transaction: the terminal's
  number of transactions over ``(t - 7 - w, t - 7]`` and the share of them known to be fraud.
  Fraud becomes known with a delay (investigations, chargebacks), so only labels at least
  ``TERMINAL_DELAY_DAYS`` old are used: no label of the last 7 days reaches the feature.

Windows are computed for all groups at once: rows sorted by (group, time) and keyed
``group * span + time``, so a binary search for ``key - window`` never leaves the group. As in
pandas' time-based rolling windows, a row's window holds the rows of its group before it (in time
order) within the window, and itself; a later row at the same second is not in it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from fedsilo.fraudsim.transactions import DAY_SECONDS, Transactions

__all__ = [
    "CUSTOMER_WINDOWS",
    "TERMINAL_DELAY_DAYS",
    "TERMINAL_WINDOWS",
    "customer_windows",
    "terminal_windows",
    "time_flags",
]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

CUSTOMER_WINDOWS = (1, 7, 30)
TERMINAL_WINDOWS = (1, 7, 30)
TERMINAL_DELAY_DAYS = 7
_NIGHT_END_S = 7 * 3600


def time_flags(seconds: IntArray, start_date: str) -> dict[str, IntArray]:
    """``tx_during_weekend`` and ``tx_during_night`` (0/1) of times counted from ``start_date``."""
    start_day = int(np.datetime64(start_date, "D").astype(np.int64))  # days since 1970-01-01
    weekday = (start_day + seconds // DAY_SECONDS + 3) % 7  # 1970-01-01 was a Thursday (3)
    return {
        "tx_during_weekend": (weekday >= 5).astype(np.int64),
        "tx_during_night": (seconds % DAY_SECONDS < _NIGHT_END_S).astype(np.int64),
    }


def _grouped(group: IntArray, seconds: IntArray, span: int) -> tuple[IntArray, IntArray]:
    """The (group, time) order of the rows and their sorted keys ``group * span + time``."""
    order = np.lexsort((np.arange(group.size), seconds, group))
    return order, group[order] * span + seconds[order]


def _rows_after(keys: IntArray, bound: IntArray) -> IntArray:
    """For each bound, how many sorted keys are at or below it."""
    return np.searchsorted(keys, bound, side="right").astype(np.int64)


def customer_windows(
    tx: Transactions, windows: tuple[int, ...] = CUSTOMER_WINDOWS
) -> dict[str, FloatArray]:
    """``customer_nb_tx_{w}day`` and ``customer_avg_amount_{w}day`` per transaction."""
    span = int(tx.seconds.max(initial=0)) + (max(windows) + 1) * DAY_SECONDS
    order, keys = _grouped(tx.customer, tx.seconds, span)
    cum = np.concatenate([[0], np.cumsum(tx.cents[order])])
    here = np.arange(1, order.size + 1, dtype=np.int64)  # rows up to and including each row
    out: dict[str, FloatArray] = {}
    for w in windows:
        first = _rows_after(keys, keys - w * DAY_SECONDS)
        count = here - first
        cents = cum[here] - cum[first]
        out[f"customer_nb_tx_{w}day"] = _unsort(order, count.astype(np.float64))
        out[f"customer_avg_amount_{w}day"] = _unsort(order, cents / count / 100.0)
    return out


def terminal_windows(
    tx: Transactions,
    windows: tuple[int, ...] = TERMINAL_WINDOWS,
    delay_days: int = TERMINAL_DELAY_DAYS,
) -> dict[str, FloatArray]:
    """``terminal_nb_tx_{w}day`` and ``terminal_risk_{w}day`` per transaction, from the labels
    of the terminal's transactions in ``(t - delay - w, t - delay]`` only."""
    span = int(tx.seconds.max(initial=0)) + (delay_days + max(windows) + 1) * DAY_SECONDS
    order, keys = _grouped(tx.terminal, tx.seconds, span)
    cum = np.concatenate([[0], np.cumsum(tx.fraud[order], dtype=np.int64)])
    end = _rows_after(keys, keys - delay_days * DAY_SECONDS)
    out: dict[str, FloatArray] = {}
    for w in windows:
        first = _rows_after(keys, keys - (delay_days + w) * DAY_SECONDS)
        count = end - first
        frauds = cum[end] - cum[first]
        risk = np.divide(frauds, count, out=np.zeros(count.size), where=count > 0)
        out[f"terminal_nb_tx_{w}day"] = _unsort(order, count.astype(np.float64))
        out[f"terminal_risk_{w}day"] = _unsort(order, risk)
    return out


def _unsort(order: IntArray, values: FloatArray) -> FloatArray:
    """Values computed in ``order`` back in the rows' own order."""
    out = np.empty_like(values)
    out[order] = values
    return out
