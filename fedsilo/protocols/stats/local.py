"""The ``stats`` protocol in one process: every silo a :class:`StatsParty`, every message
through the wire codec (:class:`fedsilo.ml.relay.Relay`), in the order of
:func:`fedsilo.protocols.stats.conversation.run` (tests, the benchmark)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fedsilo.ml.relay import Relay
from fedsilo.protocols.conversation import InProcess, Reply, Step, StepInput
from fedsilo.protocols.stats.conversation import run
from fedsilo.protocols.stats.party import StatsParty

__all__ = ["run_in_process"]


def _steps(party: StatsParty) -> dict[str, Step]:
    name = party.party

    def profile(inp: StepInput) -> Reply:
        return Reply(party=name, meta=party.profile())

    def encrypt(inp: StepInput) -> Reply:
        to = [str(p) for p in inp.meta["to"]]
        msg = party.encrypt(to)
        return Reply(party=name, outbox={p: msg for p in to})

    def cross(inp: StepInput) -> Reply:
        return Reply(party=name, outbox=party.cross(inp.inbox))

    def open_(inp: StepInput) -> Reply:
        return Reply(party=name, meta={"blocks": party.open(inp.inbox)})

    return {
        "stats.profile": profile,
        "stats.encrypt": encrypt,
        "stats.cross": cross,
        "stats.open": open_,
    }


def run_in_process(
    parties: Mapping[str, StatsParty], *, correlate: bool = True, relay: Relay | None = None
) -> dict[str, Any]:
    """The step's result over ``parties`` (by name), as the coordinator would record it."""
    steps = {(p, m): fn for p, party in parties.items() for m, fn in _steps(party).items()}
    return run(InProcess(steps, relay or Relay()), sorted(parties), correlate=correlate)
