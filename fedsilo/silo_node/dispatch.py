"""Run one call at a silo: authorise it, unseal the inbox, run the method, record and seal the
outbox.

Authorisation has one path (:func:`authorize`): every call names the step of the accepted job it
belongs to (``meta["step"]``, an index into the spec the silo accepted at OpenJob); the method
must be registered for that step's kind, and the silo's policy must allow that kind in this
silo's role. A method the accepted job does not list is refused, whatever the coordinator says.

The ledger entry for every outgoing message is committed before the sealed bytes are handed to
gRPC, so a silo's audit trail can never miss something it sent.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from fedsilo import leakage
from fedsilo.errors import PolicyError, ProtocolError
from fedsilo.jobspec import step_entry
from fedsilo.logs import clean, where_raised
from fedsilo.message import check_strings, decode, encode
from fedsilo.protocols import KNOWN_PROTOCOLS, modules
from fedsilo.silo_node.context import SiloContext
from fedsilo.silo_node.methods import CallReply, CallRequest, MethodFn, RegisteredMethod, get_method
from fedsilo.silo_node.session import JobSession
from fedsilo.wire import Envelope, StepPayload

__all__ = ["StepMeta", "authorize", "load_method_modules", "run_method"]

log = logging.getLogger(__name__)


def load_method_modules() -> None:
    """Import ``fedsilo.protocols.<kind>.silo`` for every registered protocol, so its methods
    register (:func:`fedsilo.silo_node.methods.method`)."""
    modules("silo")


class StepMeta(dict[str, Any]):
    """The coordinator's meta for a call: a missing key is the coordinator's error, not ours.

    Steps read required values as ``req.meta["start"]``; on a dict that raises KeyError, which
    the servicer would answer as INTERNAL. Here it is a ProtocolError naming the key.
    """

    def __missing__(self, key: str) -> Any:
        raise ProtocolError(f"call meta lacks '{str(key)[:40]}'")


def authorize(
    ctx: SiloContext, session: JobSession, method: str, registered: RegisteredMethod, index: Any
) -> Mapping[str, Any]:
    """The accepted spec's entry for the step this call names; refuse what it does not allow.

    The method must belong to that entry's kind (``psi.start`` to a psi step, ``predict.part`` to
    an evaluate or score step), and a protocol kind must be allowed by this silo's policy in its
    role in this job. Checked on every call, not once for the steps the spec lists.
    """
    entry = step_entry(session.spec, index)
    kind = str(entry.get("kind", ""))
    if kind not in registered.kinds:
        raise PolicyError(
            f"'{method[:80]}' is not part of a '{kind[:40]}' step; it belongs to "
            f"{' or '.join(sorted(registered.kinds))} steps only"
        )
    if kind in KNOWN_PROTOCOLS:
        ctx.config.policy.check_protocol(kind, session.role)
    return entry


def _open_inbox(session: JobSession, payload: StepPayload) -> CallRequest:
    inbox = {}
    for env in payload.envelopes:
        if env.sender not in session.parties or env.sender == session.keys.party:
            raise ProtocolError(f"envelope from '{env.sender[:40]}', not a peer in the job")
        inbox[env.sender] = decode(session.keys.open(env.sender, env.sealed))
    return CallRequest(meta=StepMeta(payload.meta), inbox=inbox, plain=payload.plain)


#: what a method raises when the values it was sent have the wrong type or range (``int("x")``,
#: ``dict(5)``, an index past an array): malformed input, answered INVALID_ARGUMENT.
_INPUT_ERRORS = (LookupError, TypeError, ValueError, ArithmeticError, AttributeError)


def _call_method(
    fn: MethodFn, ctx: SiloContext, session: JobSession, method: str, request: CallRequest
) -> CallReply:
    """Run a method; a bare Python error on its input becomes a ProtocolError naming it.

    Steps should validate what they read and raise ``fedsilo.errors`` themselves; this is the
    net under those that do not yet. Where it was raised is logged at the silo at debug level (a
    genuine bug in a step shows up there; the refusal itself is the one warning line), but the
    caller gets INVALID_ARGUMENT instead of INTERNAL, so garbage sent by a coordinator is never
    reported as the silo's own failure. Only the exception's type leaves the silo, and its text
    is not logged either: it may quote local data (a ``KeyError`` on a raw id).
    """
    try:
        return fn(ctx, session, request)
    except _INPUT_ERRORS as exc:
        job = clean(session.job_id)
        log.debug("method %s of job %s refused its input\n%s", method, job, where_raised(exc))
        raise ProtocolError(
            f"'{method}' could not use its input ({type(exc).__name__}; where: in the silo's "
            "debug log)"
        ) from None


def _seal_outbox(
    ctx: SiloContext, session: JobSession, method: str, reply: CallReply
) -> StepPayload:
    envelopes = []
    for recipient, msg in reply.outbox.items():
        if recipient == ctx.party or recipient not in session.parties:
            raise ProtocolError(f"'{method}' addressed '{recipient}', not a peer in the job")
        data = encode(msg)
        ctx.ledger.append(
            job_id=session.job_id,
            step=method,
            peer=recipient,
            kind=msg.kind,
            nbytes=len(data),
            reveals=leakage.describe(msg.kind),
        )
        sealed = session.keys.seal(recipient, data, step=method)
        envelopes.append(Envelope(ctx.party, recipient, sealed))
    plain = None
    if reply.release is not None:
        plain = reply.release
        ctx.ledger.append(
            job_id=session.job_id,
            step=method,
            peer=leakage.COORDINATOR,
            kind=plain.kind,
            nbytes=len(encode(plain)),
            reveals=leakage.describe(plain.kind),
        )
    if reply.meta:
        released = json.dumps(reply.meta, sort_keys=True)
        ctx.ledger.append(
            job_id=session.job_id,
            step=method,
            peer=leakage.COORDINATOR,
            kind="job.released",
            nbytes=len(released),
            reveals=f"{leakage.describe('job.released')}: {released[:400]}",
        )
    return StepPayload(meta=reply.meta, envelopes=envelopes, plain=plain)


def run_method(
    ctx: SiloContext, session: JobSession, method: str, seq: int, payload: StepPayload
) -> StepPayload:
    """One call, authorised against the accepted job, serialised per session, in order."""
    registered = get_method(method)
    check_strings(payload.meta, "call meta")  # NUL never reaches the silo's database
    with session.lock:
        entry = authorize(ctx, session, method, registered, payload.meta.get("step"))
        session.advance(seq)
        request = _open_inbox(session, payload)
        request.spec_step, request.step_index = entry, int(payload.meta["step"])
        reply = _call_method(registered.fn, ctx, session, method, request)
        return _seal_outbox(ctx, session, method, reply)
