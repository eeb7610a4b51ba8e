"""A passive silo's control over what it answers online: rate, daily budget, aggregated ledger.

Per served model the silo answers at most ``serve_rate_limit`` rows per second (a token bucket
holding one second's worth) and ``serve_daily_budget`` rows per UTC day. What it answers is
counted and written to its audit ledger once per ``SERVING_LEDGER_INTERVAL_S`` as one entry
(requests, rows, rows held, refusals, bytes) instead of one entry per payment. The day's count
is read back from the ledger at start, so a restart does not reset the budget. Counts not yet
written when the process dies (at most one interval) are lost: docs/serving.md says so.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from fedsilo import leakage, settings
from fedsilo.errors import LimitExceeded
from fedsilo.protocols.serve.online import PART
from fedsilo.silo_node.context import SiloContext
from fedsilo.silo_node.serving.record import ServingRecord

__all__ = ["COUNTS_MARK", "IntervalLedger", "ServeGuard"]

#: separates the described disclosure from the interval's counts in a ledger entry's text
COUNTS_MARK = " | counts: "


def _day() -> str:
    return datetime.now(UTC).date().isoformat()


def _stamp() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class _Interval:
    start: str
    requests: int = 0
    rows: int = 0
    held: int = 0
    refused: int = 0
    nbytes: int = 0

    @property
    def empty(self) -> bool:
        return not (self.requests or self.refused)


class IntervalLedger:
    """One serving's messages of one kind to one peer, counted and written to the audit ledger
    as one entry per ``SERVING_LEDGER_INTERVAL_S`` (see the module docstring)."""

    def __init__(self, ctx: SiloContext, record: ServingRecord, kind: str, peer: str) -> None:
        self.ctx, self.record, self.kind, self.peer = ctx, record, kind, peer
        self._lock = threading.Lock()
        self._interval = _Interval(_stamp())
        self._opened = time.monotonic()

    def count(self, rows: int, held: int, nbytes: int) -> None:
        with self._lock:
            self._interval.requests += 1
            self._interval.rows += rows
            self._interval.held += held
            self._interval.nbytes += nbytes
        self.flush(force=False)

    def refused(self) -> None:
        with self._lock:
            self._interval.refused += 1

    def flush(self, *, force: bool) -> None:
        """Write the interval's counts as one ledger entry once the interval is over."""
        with self._lock:
            due = time.monotonic() - self._opened >= settings.SERVING_LEDGER_INTERVAL_S
            if not (due or force) or self._interval.empty:
                return
            done, self._interval = self._interval, _Interval(_stamp())
            self._opened = time.monotonic()
        counts = {
            "model": self.record.model,
            "part": self.record.part,
            "from": done.start,
            "to": _stamp(),
            "requests": done.requests,
            "rows": done.rows,
            "held": done.held,
            "refused": done.refused,
        }
        text = json.dumps(counts, sort_keys=True)
        self.ctx.ledger.append(
            job_id=self.record.serving_id,
            step=self.kind,
            peer=self.peer,
            kind=self.kind,
            nbytes=done.nbytes,
            reveals=f"{leakage.describe(self.kind)}{COUNTS_MARK}{text}",
        )


class ServeGuard:
    """Admits and counts one served model's online answers at a passive silo."""

    def __init__(self, ctx: SiloContext, record: ServingRecord) -> None:
        self.ctx, self.record = ctx, record
        policy = ctx.config.policy
        self.rate, self.budget = policy.serve_rate_limit, policy.serve_daily_budget
        self._tokens, self._refilled = float(self.rate), time.monotonic()
        self._lock = threading.Lock()
        self.ledger = IntervalLedger(ctx, record, PART, record.active)
        self._day = _day()
        self._today = self._rows_today()

    def _rows_today(self) -> int:
        """Rows this silo already answered today for this serving, from its ledger."""
        total = 0
        for entry in self.ctx.ledger.entries(self.record.serving_id):
            if entry.kind == PART and entry.created_at.startswith(self._day):
                _, _, counts = entry.reveals.partition(COUNTS_MARK)
                try:
                    total += int(json.loads(counts)["rows"])
                except (ValueError, KeyError, TypeError):
                    continue
        return total

    def admit(self, rows: int) -> None:
        """Take ``rows`` from the rate and the day's budget, or refuse with the reason."""
        with self._lock:
            if _day() != self._day:
                self._day, self._today = _day(), 0
            now = time.monotonic()
            self._tokens = min(float(self.rate), self._tokens + (now - self._refilled) * self.rate)
            self._refilled = now
            if self._today + rows > self.budget:
                self.ledger.refused()
                raise LimitExceeded(
                    f"silo '{self.ctx.party}' refused: daily budget of {self.budget} rows for "
                    f"model '{self.record.model}' is spent (policy serve_daily_budget)"
                )
            if rows > self._tokens:
                self.ledger.refused()
                raise LimitExceeded(
                    f"silo '{self.ctx.party}' refused: rate limit of {self.rate} rows/s for "
                    f"model '{self.record.model}' exceeded (policy serve_rate_limit)"
                )
            self._tokens -= rows
            self._today += rows

    def count(self, rows: int, held: int, nbytes: int) -> None:
        self.ledger.count(rows, held, nbytes)

    def flush(self, *, force: bool) -> None:
        self.ledger.flush(force=force)
