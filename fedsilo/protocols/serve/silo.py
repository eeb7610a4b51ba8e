"""The ``serve`` step at the silos: agree the keys of a model's online scoring, store them.

``serve.prepare`` runs at the label holder: it draws the pseudonym key, derives a serving key
with each passive silo from this job's session keys and seals the pseudonym key to each.
``serve.accept`` runs at every passive silo: it opens the key, derives its serving key with the
label holder (and, for vertical LR, its mask seeds with the other passive silos) and stores its
record. Both refuse a model their policy does not list in ``serve_models``. What a silo serves
afterwards runs on the Serve stream (:mod:`fedsilo.silo_node.serving`).
"""

from __future__ import annotations

import secrets

from fedsilo.errors import PolicyError, ProtocolError
from fedsilo.message import Message
from fedsilo.protocols.serve.online import CHANNEL_TAG, KEY, KEY_BYTES
from fedsilo.silo_node.context import SiloContext
from fedsilo.silo_node.methods import CallReply, CallRequest, method
from fedsilo.silo_node.predict import load_part, pair_seed
from fedsilo.silo_node.serving.record import ServingRecord, check_served, save_record
from fedsilo.silo_node.session import JobSession

__all__ = ["SERVABLE_KINDS"]

#: vertical model kinds that can be served online
SERVABLE_KINDS = ("secureboost", "lr")


def _target(ctx: SiloContext, session: JobSession, req: CallRequest) -> tuple[str, str, str]:
    """``(registry id, part id, kind)`` of the model the accepted step serves, if allowed."""
    model = str(req.spec_step.get("model") or "")
    if not model:
        raise PolicyError("the accepted serve step names no model")
    check_served(ctx, model)
    part = str(req.meta["part"])
    kind, _payload = load_part(ctx, part)
    if kind not in SERVABLE_KINDS:
        raise PolicyError(f"model kind '{kind[:40]}' cannot be served online")
    return model, part, kind


def _record(
    ctx: SiloContext, session: JobSession, req: CallRequest, **keys: object
) -> ServingRecord:
    model, part, kind = _target(ctx, session, req)
    return ServingRecord(
        serving_id=session.job_id,
        model=model,
        part=part,
        kind=kind,
        role=session.role,
        party=ctx.party,
        dataset=session.dataset,
        active=session.active_party("serve"),
        passives=tuple(session.party_with_role("passive")),
        on_party_down=str(req.spec_step.get("on_party_down") or "fail"),
        **keys,  # type: ignore[arg-type]
    )


@method("serve.prepare", kinds=("serve",))
def prepare(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """At the label holder: draw the pseudonym key, keep it, seal it to every passive silo."""
    if session.role != "active":
        raise PolicyError("serve.prepare runs at the label holder")
    key = secrets.token_bytes(KEY_BYTES)
    passives = session.party_with_role("passive")
    channels = {p: session.keys.derive(p, CHANNEL_TAG) for p in passives}
    record = _record(ctx, session, req, pseudonym_key=key, channels=channels)
    save_record(ctx, record)
    outbox = {p: Message(KEY, blobs={"key": key}) for p in passives}
    return CallReply(outbox=outbox, meta={"serving_id": session.job_id, "kind": record.kind})


@method("serve.accept", kinds=("serve",))
def accept(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """At a passive silo: keep the pseudonym key and the serving keys of this model."""
    if session.role != "passive":
        raise PolicyError("serve.accept runs at a passive silo")
    active = session.active_party("serve")
    msg = req.inbox.get(active)
    if msg is None:
        raise ProtocolError("serve.accept needs the label holder's pseudonym key")
    key = msg.expect(KEY).blobs.get("key", b"")
    if len(key) != KEY_BYTES:
        raise ProtocolError("the pseudonym key must be 32 bytes")
    peers = [p for p in session.party_with_role("passive") if p != ctx.party]
    record = _record(
        ctx,
        session,
        req,
        pseudonym_key=key,
        channels={active: session.keys.derive(active, CHANNEL_TAG)},
        pair_seeds={p: pair_seed(session.keys, p) for p in peers},
    )
    save_record(ctx, record)
    return CallReply(meta={"serving_id": session.job_id})
