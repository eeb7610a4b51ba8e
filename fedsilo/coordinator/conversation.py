"""A protocol's conversation (:mod:`fedsilo.protocols.conversation`) over a running job.

:class:`JobParties` is the coordinator's :class:`~fedsilo.protocols.conversation.Parties`: every
call is :meth:`JobRun.call` (a gRPC step at a silo), and the sealed envelopes a reply carries are
kept by recipient, unread, and relayed to the party a later call delivers them to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fedsilo.coordinator.jobrun import Call as RunCall
from fedsilo.coordinator.jobrun import JobRun
from fedsilo.errors import JobError
from fedsilo.message import Message
from fedsilo.protocols.conversation import Call, Reply
from fedsilo.wire import Envelope, StepPayload

__all__ = ["JobParties"]


def _reply(party: str, payload: StepPayload) -> Reply:
    outbox: dict[str, list[Envelope]] = {}
    for env in payload.envelopes:
        outbox.setdefault(env.recipient, []).append(env)
    return Reply(party=party, meta=payload.meta, released=payload.plain, outbox=outbox)


def _mail(inbox: Sequence[Reply], party: str) -> list[Envelope]:
    """The sealed envelopes the ``inbox`` replies hold for ``party``, in reply order."""
    out: list[Envelope] = []
    for reply in inbox:
        sealed = reply.outbox.get(party, [])
        if not isinstance(sealed, list):
            raise JobError(f"relay error: a reply from '{reply.party}' came from no silo")
        out.extend(env for env in sealed if isinstance(env, Envelope))
    return out


class JobParties:
    """:class:`~fedsilo.protocols.conversation.Parties` over a :class:`JobRun`."""

    def __init__(self, run: JobRun) -> None:
        self.run = run

    def call(
        self,
        party: str,
        method: str,
        meta: Mapping[str, Any] | None = None,
        inbox: Sequence[Reply] = (),
        *,
        plain: Message | None = None,
    ) -> Reply:
        payload = self.run.call(party, method, dict(meta or {}), _mail(inbox, party), plain=plain)
        return _reply(party, payload)

    def call_many(
        self, calls: Mapping[str, Call], *, plain: Message | None = None
    ) -> dict[str, Reply]:
        relayed: dict[str, RunCall] = {
            p: (method, dict(meta), _mail(inbox, p)) for p, (method, meta, inbox) in calls.items()
        }
        return {p: _reply(p, r) for p, r in self.run.call_many(relayed, plain=plain).items()}
