"""The "call the parties" interface: a protocol's message order, written once.

A protocol's conversation (``fedsilo/protocols/<kind>/conversation.py``) is one function that
calls the parties' steps in order against :class:`Parties`. Two adapters run it:

- the coordinator's, over a running job (``fedsilo.coordinator.conversation.JobParties``): every
  call is a gRPC step, outboxes are sealed envelopes the coordinator relays unread;
- the in-process one (:class:`InProcess`): every call runs a step function over the party
  objects in this process, every message through the wire codec (:class:`fedsilo.ml.relay.Relay`
  counts the bytes).

A :class:`Reply` is what one party's step returned: released meta, a released plain message
(for the coordinator to compute on) and an outbox per recipient. The outbox is opaque to the
conversation: it only says which earlier replies to deliver to the next callee (the ``inbox`` of
a call), and the adapter routes what those replies hold for that callee.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from fedsilo.errors import JobError
from fedsilo.message import Message
from fedsilo.ml.relay import Relay

__all__ = [
    "Call",
    "InProcess",
    "Parties",
    "Reply",
    "Step",
    "StepInput",
    "addressed",
    "resume_point",
]


@dataclass(frozen=True)
class Reply:
    """One party's step reply as a conversation sees it (``CallReply`` at a silo, ``StepPayload``
    at the coordinator)."""

    party: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    #: an unsealed message released to the coordinator (a ciphertext it aggregates), if any
    released: Message | None = None
    #: per recipient, what the step sent it: opaque, only the adapter that made it reads it
    outbox: Mapping[str, object] = field(default_factory=dict)


#: (method, meta, earlier replies whose mail for the callee is delivered) for one party
Call = tuple[str, Mapping[str, Any], Sequence[Reply]]


class Parties(Protocol):
    """Calls the parties' steps; sealing, relaying and transport are the adapter's business."""

    def call(
        self,
        party: str,
        method: str,
        meta: Mapping[str, Any] | None = None,
        inbox: Sequence[Reply] = (),
        *,
        plain: Message | None = None,
    ) -> Reply:
        """Run ``method`` at ``party``, delivering what the ``inbox`` replies hold for it (and
        ``plain``, a message from the coordinator)."""
        ...

    def call_many(
        self, calls: Mapping[str, Call], *, plain: Message | None = None
    ) -> dict[str, Reply]:
        """Run one call at each of several parties (concurrently where the adapter can)."""
        ...


def addressed(replies: Mapping[str, Reply] | Sequence[Reply], party: str) -> bool:
    """Whether any of ``replies`` sent ``party`` something (without reading it)."""
    values = replies.values() if isinstance(replies, Mapping) else replies
    return any(party in reply.outbox for reply in values)


def resume_point(replies: Mapping[str, Mapping[str, Any]], unit: str) -> int:
    """The tree (epoch) every silo's setup meta says training resumes at; they must agree.

    Silos that disagree (one lost its checkpoint, or holds an older one) cannot continue one
    training together: the resumed run is refused, and a fresh run (no ``--resume``) trains anew.
    """
    at = {p: int(meta.get("resumed_at", 0)) for p, meta in replies.items()}
    if len(set(at.values())) > 1:
        said = ", ".join(f"{p} at {unit} {k}" for p, k in sorted(at.items()))
        raise JobError(f"silos disagree where training resumes ({said}); rerun without resume")
    return next(iter(at.values()), 0)


# --- in one process ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepInput:
    """What an in-process step gets: the coordinator's meta, its mail by sender, a plain message."""

    meta: Mapping[str, Any]
    inbox: dict[str, Message]
    plain: Message | None = None


#: an in-process step: its input to (meta, released, outbox of Messages) as a :class:`Reply`
Step = Callable[[StepInput], Reply]


class InProcess:
    """:class:`Parties` over party objects in this process.

    ``steps`` maps ``(party, method)`` to a step function. Every message crosses ``relay``
    (encoded, counted, decoded) as the coordinator would carry it: each outbox message once per
    recipient it is delivered to, each released message once, the coordinator's plain message
    once per callee.
    """

    def __init__(self, steps: Mapping[tuple[str, str], Step], relay: Relay) -> None:
        self.steps, self.relay = steps, relay

    def call(
        self,
        party: str,
        method: str,
        meta: Mapping[str, Any] | None = None,
        inbox: Sequence[Reply] = (),
        *,
        plain: Message | None = None,
    ) -> Reply:
        mail: dict[str, Message] = {}
        for reply in inbox:
            msg = reply.outbox.get(party)
            if isinstance(msg, Message):
                mail[reply.party] = self.relay.carry(msg)
        step = self.steps.get((party, method))
        if step is None:
            raise JobError(f"'{party}' has no step '{method}'")
        given = self.relay.carry(plain) if plain is not None else None
        out = step(StepInput(meta=dict(meta or {}), inbox=mail, plain=given))
        released = self.relay.carry(out.released) if out.released is not None else None
        return replace(out, party=party, released=released)

    def call_many(
        self, calls: Mapping[str, Call], *, plain: Message | None = None
    ) -> dict[str, Reply]:
        return {
            party: self.call(party, method, meta, inbox, plain=plain)
            for party, (method, meta, inbox) in calls.items()
        }
