"""Horizontal LR run in one process, every message through the wire codec: tests' and bench's
coordinator.

The real coordinator drives the same silo objects over gRPC (:mod:`fedsilo.protocols.hlr.driver`);
this module plays its part without a network (:class:`fedsilo.ml.relay.Relay` encodes, counts
and decodes every message).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from fedsilo.ml.relay import Relay
from fedsilo.protocols.hlr.horizontal import (
    STATS_PHASES,
    HorizontalLRModel,
    HorizontalSilo,
    aggregate,
    check_silo_count,
)

__all__ = ["run_horizontal"]


def run_horizontal(
    silos: Sequence[HorizontalSilo], relay: Relay | None = None
) -> HorizontalLRModel:
    """Key sharing, four statistic rounds, then FedAvg rounds until the silos report convergence.

    ``relay.history`` gets one entry per round (loss, change, cumulative bytes and seconds).
    """
    relay = relay if relay is not None else Relay()
    check_silo_count(len(silos))
    start = time.perf_counter()
    secret, public = silos[0].create_keys()
    for silo in silos[1:]:
        silo.accept_keys(relay.carry(secret))
    for index in range(STATS_PHASES):
        total = aggregate(public, [relay.carry(s.stats_message(index)) for s in silos])
        for silo in silos:
            silo.accept_stats(relay.carry(total))
    for _ in range(silos[0].config.max_iter):
        total = aggregate(public, [relay.carry(s.update_message()) for s in silos])
        results = [silo.accept_update(relay.carry(total)) for silo in silos]
        relay.history.append(
            {
                **results[0].to_meta(),
                "bytes": relay.bytes_relayed,
                "seconds": time.perf_counter() - start,
            }
        )
        if results[0].converged:
            break
    return silos[0].model()
