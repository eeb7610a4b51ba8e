"""The ``woe`` step run in one process, every message through the wire codec: tests' and
bench's coordinator (the message order is :func:`fedsilo.protocols.woe.conversation.run`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fedsilo.ml.relay import Relay
from fedsilo.protocols.conversation import InProcess, Reply, Step, StepInput
from fedsilo.protocols.woe import conversation
from fedsilo.protocols.woe.parties import COUNTS, LabelHolder, PassiveParty

__all__ = ["run_woe"]


def run_woe(
    holder: LabelHolder, passives: Sequence[PassiveParty], relay: Relay | None = None
) -> dict[str, Any]:
    """Every party ends with its tables (the holder) or what was released to it (passives)."""
    relay = relay if relay is not None else Relay()

    def setup(req: StepInput) -> Reply:
        msg = holder.labels_message()
        return Reply(meta=holder.released_meta(), outbox={p: msg for p in holder.passives})

    def tables(req: StepInput) -> Reply:
        return Reply(outbox=holder.results({s: m.expect(COUNTS) for s, m in req.inbox.items()}))

    steps: dict[tuple[str, str], Step] = {
        (holder.party, "woe.setup"): setup,
        (holder.party, "woe.tables"): tables,
    }
    for p in passives:
        steps.update(_passive_steps(p, holder.party))
    return conversation.run(
        InProcess(steps, relay), active=holder.party, passives=[p.party for p in passives]
    )


def _passive_steps(passive: PassiveParty, active: str) -> dict[tuple[str, str], Step]:
    def bin_(req: StepInput) -> Reply:
        msg = passive.counts_message(req.inbox[active])
        return Reply(meta=passive.released_meta(), outbox={active: msg})

    def accept(req: StepInput) -> Reply:
        passive.accept_result(req.inbox[active])
        return Reply(meta=passive.accepted_meta())

    return {(passive.party, "woe.bin"): bin_, (passive.party, "woe.accept"): accept}
