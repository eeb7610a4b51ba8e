"""Run one step at a silo: unseal the inbox, call the step, record and seal the outbox.

The ledger entry for every outgoing message is committed before the sealed bytes are handed to
gRPC, so a silo's audit trail can never miss something it sent.
"""

from __future__ import annotations

import importlib
import json
import pkgutil

from fedsilo import leakage
from fedsilo.errors import ProtocolError
from fedsilo.message import decode, encode
from fedsilo.silo_node import steps as steps_pkg
from fedsilo.silo_node.context import SiloContext
from fedsilo.silo_node.session import JobSession
from fedsilo.silo_node.steps import StepReply, StepRequest, get_step
from fedsilo.wire import Envelope, StepPayload

__all__ = ["load_step_modules", "run_step"]


def load_step_modules() -> None:
    """Import every module of ``fedsilo.silo_node.steps`` so their steps register."""
    for info in pkgutil.iter_modules(steps_pkg.__path__):
        importlib.import_module(f"{steps_pkg.__name__}.{info.name}")


def _open_inbox(session: JobSession, payload: StepPayload) -> StepRequest:
    inbox = {}
    for env in payload.envelopes:
        if env.sender not in session.parties:
            raise ProtocolError(f"envelope from '{env.sender[:40]}', not a party of the job")
        inbox[env.sender] = decode(session.keys.open(env.sender, env.sealed))
    return StepRequest(meta=payload.meta, inbox=inbox)


def _seal_outbox(ctx: SiloContext, session: JobSession, method: str, reply: StepReply) -> StepPayload:
    envelopes = []
    for recipient, msg in reply.outbox.items():
        if recipient == ctx.party or recipient not in session.parties:
            raise ProtocolError(f"step '{method}' addressed '{recipient}', not a peer in the job")
        data = encode(msg)
        ctx.ledger.append(job_id=session.job_id, step=method, peer=recipient, kind=msg.kind,
                          nbytes=len(data), reveals=leakage.describe(msg.kind))
        envelopes.append(Envelope(ctx.party, recipient, session.keys.seal(recipient, data)))
    if reply.meta:
        released = json.dumps(reply.meta, sort_keys=True)
        ctx.ledger.append(job_id=session.job_id, step=method, peer=leakage.COORDINATOR,
                          kind="job.released", nbytes=len(released),
                          reveals=f"{leakage.describe('job.released')}: {released[:400]}")
    return StepPayload(meta=reply.meta, envelopes=envelopes)


def run_step(ctx: SiloContext, session: JobSession, method: str, seq: int,
             payload: StepPayload) -> StepPayload:
    """One step, serialised per session and in sequence order."""
    fn = get_step(method)
    with session.lock:
        session.advance(seq)
        reply = fn(ctx, session, _open_inbox(session, payload))
        return _seal_outbox(ctx, session, method, reply)
