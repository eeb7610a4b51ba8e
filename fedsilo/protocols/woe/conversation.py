"""The ``woe`` step's message order, written once: the driver (over gRPC) and the in-process
runner (:func:`fedsilo.protocols.woe.local.run_woe`) both run :func:`run`.

``woe.setup`` at the label holder (its encrypted labels to every passive silo), ``woe.bin`` at
the passive silos (their encrypted per-bin sums back), ``woe.tables`` at the label holder (WOE and
IV; what its policy releases to each owner), ``woe.accept`` at the passive silos (each stores
what it got). What each message reveals: :mod:`fedsilo.protocols.woe.parties`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fedsilo.errors import JobError
from fedsilo.protocols.conversation import Parties

__all__ = ["run"]


def run(parties: Parties, *, active: str, passives: Sequence[str]) -> dict[str, Any]:
    """Bin, count and tabulate; returns what the silos released (counts of characteristics and
    bins, and which results went back to each owner)."""
    labels = parties.call(active, "woe.setup")
    counts = parties.call_many({p: ("woe.bin", {}, [labels]) for p in passives})
    rows = {active: labels.meta["rows"], **{p: r.meta["rows"] for p, r in counts.items()}}
    if len(set(rows.values())) != 1:
        raise JobError(f"silos hold different numbers of aligned rows: {rows}")
    tables = parties.call(active, "woe.tables", {}, list(counts.values()))
    accepted = parties.call_many({p: ("woe.accept", {}, [tables]) for p in passives})
    return {
        "rows": int(rows[active]),
        "characteristics": {
            active: labels.meta["characteristics"],
            **{p: r.meta["characteristics"] for p, r in counts.items()},
        },
        "bins": {active: labels.meta["bins"], **{p: r.meta["bins"] for p, r in counts.items()}},
        "released_to_owner": {p: r.meta for p, r in sorted(accepted.items())},
    }
