"""A fairness audit in one process, every message through the wire codec: tests' and bench's
coordinator. The order is :func:`fedsilo.protocols.fairness.conversation.run`, as over gRPC."""

from __future__ import annotations

from typing import Any

from fedsilo.ml.relay import Relay
from fedsilo.protocols.conversation import InProcess, Reply, Step, StepInput
from fedsilo.protocols.fairness import conversation
from fedsilo.protocols.fairness.audit import GROUPS, MASKED, SHARES, AttributeHolder, LabelHolder
from fedsilo.protocols.fairness.metrics import audit_metrics

__all__ = ["run_audit"]


def run_audit(
    attribute: AttributeHolder, label: LabelHolder, min_rows: int, relay: Relay | None = None
) -> dict[str, Any]:
    """The metrics the label holder would release (``audit_metrics``), computed in-process."""
    relay = relay if relay is not None else Relay()
    a, lh = attribute.party, label.party

    def groups(req: StepInput) -> Reply:
        return Reply(outbox={lh: attribute.groups_message()})

    def mask(req: StepInput) -> Reply:
        return Reply(outbox={a: label.masked_message(req.inbox[a].expect(GROUPS))})

    def open_(req: StepInput) -> Reply:
        return Reply(outbox={lh: attribute.shares_message(req.inbox[lh].expect(MASKED))})

    def finish(req: StepInput) -> Reply:
        counts = label.finish(req.inbox[a].expect(SHARES))
        return Reply(meta=audit_metrics(counts, label.thresholds, min_rows))

    steps: dict[tuple[str, str], Step] = {
        (a, conversation.METHODS[0]): groups,
        (lh, conversation.METHODS[1]): mask,
        (a, conversation.METHODS[2]): open_,
        (lh, conversation.METHODS[3]): finish,
    }
    _, done = conversation.run(InProcess(steps, relay), label_holder=lh, attribute_holder=a)
    return done.meta
