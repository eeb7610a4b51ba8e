"""PSI at a silo: thin steps around :mod:`fedsilo.psi` (the leader is the job's active silo).

The coordinator drives rounds of ``psi.pump``. In each round a silo takes the messages relayed to
it, answers them, blinds its next batch of ids (read from its database in batches of
``settings.PSI_BATCH_IDS``) and sends at most one message per peer. A silo blinds a new batch only
while at most one message waits for each peer, so memory stays at a few batches besides what
:mod:`fedsilo.psi` holds (16-32 bytes per id, see its roles).

Row numbers in PSI are positions in the dataset's id order (``SiloData.iter_ids`` orders by id).
To store the alignment a silo reads its ids again and picks the aligned rows (held packed, ~8
bytes per aligned id besides the id itself); a dataset whose ids changed in between is refused.
Nothing is stored until every party's minimum intersection is met, and an alignment stored by a
job that then fails is deleted again (``psi.abort``).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedsilo import settings
from fedsilo.errors import DataError, NotFound, PolicyError, ProtocolError
from fedsilo.jobspec import PsiSettings, psi_settings
from fedsilo.message import Message
from fedsilo.psi import (
    Follower,
    Leader,
    PackedIds,
    Pump,
    new_shuffle_seed,
    pack_ids,
    seed_message,
)
from fedsilo.silo_node.context import SiloContext
from fedsilo.silo_node.methods import CallReply, CallRequest, method
from fedsilo.silo_node.session import JobSession

MODES = ("alignment", "cardinality")


@dataclass
class PsiState:
    """One silo's PSI of one job: its pump (role, id stream, queues) and what it will store."""

    pump: Pump
    alignment: str | None
    replace: bool
    #: SHA-256 of the id stream as first read: the second read must see the very same ids
    own_digest: Any = field(default_factory=hashlib.sha256)
    leader_rows: np.ndarray | None = None
    stored: bool = False

    @property
    def role(self) -> Leader | Follower:
        return self.pump.role


# --- starting ------------------------------------------------------------------------------------


def _settings(session: JobSession, req: CallRequest) -> PsiSettings:
    """The psi step as this silo accepted it (mode, alignment, who learns it, replace)."""
    return psi_settings(session.spec, req.step_index, session.party_with_role("passive"))


def _context(session: JobSession, name: str) -> bytes:
    """Per-job hashing context: ids hashed for one job cannot be linked to another job's."""
    return f"fedsilo-psi|job={session.job_id}|alignment={name}".encode()


def _check_name_free(ctx: SiloContext, name: str, replace: bool) -> None:
    if replace:
        return
    try:
        ctx.store.alignment_info(name)
    except NotFound:
        return
    raise PolicyError(f"alignment '{name}' already exists at '{ctx.party}' (set replace = true)")


def _make_role(
    ctx: SiloContext, session: JobSession, mode: str, reveal: list[str], name: str
) -> Leader | Follower:
    context, minimum = _context(session, name), ctx.config.policy.min_intersection
    if session.role == "active":
        return Leader(
            context=context,
            followers=session.party_with_role("passive"),
            cardinality_only=mode == "cardinality",
            reveal_to=reveal,
            min_intersection=minimum,
        )
    if session.role == "passive":
        return Follower(
            context=context, cardinality_only=mode == "cardinality", min_intersection=minimum
        )
    raise ProtocolError(f"PSI has no part for role '{session.role}'")


@method("psi.start", kinds=("psi",))
def start(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """Set up this silo's role. In cardinality mode the first follower deals the shuffle seed."""
    psi = _settings(session, req)
    mode, replace, reveal, name = psi.mode, psi.replace, list(psi.reveal), psi.alignment
    leaders, followers = session.party_with_role("active"), session.party_with_role("passive")
    if len(leaders) != 1 or not followers or len(leaders) + len(followers) != len(session.parties):
        raise ProtocolError(
            "PSI needs one label holder (role 'active') and one or more passive parties only"
        )
    leader = leaders[0]
    stores = mode == "alignment" and (session.role == "active" or ctx.party in reveal)
    if stores:
        _check_name_free(ctx, name, replace)
    role = _make_role(ctx, session, mode, reveal, name)
    digest = hashlib.sha256()
    ids = _digesting(ctx.data.iter_ids(session.dataset, chunk_rows=settings.PSI_BATCH_IDS), digest)
    ids = _padded(ids, ctx.config.policy.psi_pad_to_multiple)
    pump = Pump(role, ids, leader=leader, followers=followers)
    session.state["psi"] = PsiState(pump, name if stores else None, replace, digest)
    outbox: dict[str, Message] = {}
    if isinstance(role, Follower) and role.cardinality_only and followers[0] == ctx.party:
        seed = new_shuffle_seed()
        role.set_shuffle_seed(seed)
        outbox = {p: seed_message(seed) for p in followers[1:]}
    rows = ctx.data.row_count(session.dataset)
    padded = rows + (-rows % ctx.config.policy.psi_pad_to_multiple if rows else 0)
    # the (padded) set size, which the own_ids count reveals by the end anyway: a progress total
    return CallReply(meta={"started": True, "ids": padded}, outbox=outbox)


# --- rounds --------------------------------------------------------------------------------------


def _state(session: JobSession) -> PsiState:
    state = session.state.get("psi")
    if not isinstance(state, PsiState):
        raise ProtocolError("PSI step before psi.start")
    return state


@method("psi.pump", kinds=("psi",))
def pump(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """One relay round (see :class:`fedsilo.psi.Pump`)."""
    state = _state(session)
    outbox = state.pump.round(req.inbox)
    meta = {
        "idle": state.pump.idle,
        "own_ids": state.pump.own_count,
        "peer_ids": state.pump.role.peer_count,
    }
    return CallReply(meta=meta, outbox=outbox)


# --- results -------------------------------------------------------------------------------------


def _digest_update(digest: Any, batch: list[str]) -> None:
    """Fold a batch of ids into a running digest (local only: it is never sent)."""
    digest.update(("\x1f".join(batch) + "\x1f").encode("utf-8", "surrogatepass"))


def _digesting(chunks: Iterator[list[str]], digest: Any) -> Iterator[list[str]]:
    for chunk in chunks:
        _digest_update(digest, chunk)
        yield chunk


#: dummy ids begin with a NUL, which no data layer's id does; their 128 random bits alone make a
#: match with anyone's id impossible (a collision needs ~2^64 ids)
PAD_PREFIX = "\x00fedsilo-psi-pad:"


def _padded(chunks: Iterator[list[str]], multiple: int) -> Iterator[list[str]]:
    """The dataset's ids, then random dummy ids up to the next multiple of ``multiple``, cut
    into batches of ``PSI_BATCH_IDS`` (only the last is short).

    A dummy is hashed and blinded like an id, so it is a pseudo-random point nobody can tell from
    a real one; it matches nothing, so it never enters an intersection or an alignment. The
    counterpart and the coordinator learn the set size only to within ``multiple``: batch sizes,
    and so the ``own_ids`` progress count the coordinator sees, depend on the padded size alone
    (a short batch where the real ids end would give the true size away). An empty dataset is
    not padded: it is still refused as empty.
    """
    step, count = settings.PSI_BATCH_IDS, 0
    buffer: list[str] = []
    for chunk in chunks:
        count += len(chunk)
        buffer.extend(chunk)
        while len(buffer) >= step:
            yield buffer[:step]
            del buffer[:step]
    missing = -count % multiple if count else 0
    while missing:
        size = min(step - len(buffer), missing)
        buffer.extend(PAD_PREFIX + secrets.token_hex(16) for _ in range(size))
        missing -= size
        if len(buffer) == step:
            yield buffer
            buffer = []
    if buffer:
        yield buffer


def _aligned_ids(
    ctx: SiloContext, session: JobSession, state: PsiState, rows: np.ndarray
) -> tuple[PackedIds, bool]:
    """The ids at row numbers ``rows``, read again from the dataset, packed, in database order.

    Packed (one UTF-8 blob and end offsets, ~8 bytes per id more than the id itself) rather than
    a list of Python strings (~70 bytes more): 5M aligned ids fit in ~0.13 GB. The second read
    must yield exactly the ids PSI blinded (same digest), else the stored alignment could name
    the wrong customers. Also says whether the database's order is code-point order.
    """
    changed = f"dataset '{session.dataset}' changed while PSI ran; run it again"
    wanted = np.sort(rows)
    blobs: list[bytes] = []
    ends: list[np.ndarray] = []
    ascending, last = True, ""
    seen, k, size, digest = 0, 0, 0, hashlib.sha256()
    for chunk in ctx.data.iter_ids(session.dataset, chunk_rows=settings.PSI_BATCH_IDS):
        _digest_update(digest, chunk)
        stop = int(np.searchsorted(wanted, seen + len(chunk)))
        picked = [chunk[r - seen] for r in wanted[k:stop].tolist()]
        if picked:
            ascending = ascending and last < picked[0] and all(map(str.__lt__, picked, picked[1:]))
            last = picked[-1]
            try:
                blob, chunk_ends = pack_ids(picked)
            except DataError:  # an id PSI accepted is no longer a valid id
                raise DataError(changed) from None
            blobs.append(blob)
            ends.append(chunk_ends + size)
            size += len(blob)
        k, seen = stop, seen + len(chunk)
    if digest.digest() != state.own_digest.digest() or k != len(wanted):
        raise DataError(changed)
    packed = (b"".join(blobs), np.concatenate(ends) if ends else np.zeros(0, np.int64))
    return packed, ascending


def _unpack(packed: PackedIds) -> Iterator[str]:
    """The packed ids one by one, never all as Python objects at once."""
    blob, ends = packed
    start = 0
    for i in range(0, len(ends), settings.WRITE_CHUNK_ROWS):
        for end in ends[i : i + settings.WRITE_CHUNK_ROWS].tolist():
            yield blob[start:end].decode("utf-8")
            start = end


def _save(ctx: SiloContext, session: JobSession, state: PsiState, rows: np.ndarray) -> None:
    """Store the alignment sorted by id (code-point order).

    Every party holding an alignment knows its ids (they are the intersection), so sorting by
    the normalised id reveals nothing new, and it makes the stored order the same for every
    run of the PSI: the split, the bins and so the model are reproducible from the job's seed.
    Each party sorts its own copy; the ids are equal strings, so the orders agree. Rows read in
    the database's order are already sorted unless its collation is not code-point order (a
    PostgreSQL column with a linguistic collation): only then are the ids sorted in memory.
    """
    assert state.alignment is not None
    packed, ascending = _aligned_ids(ctx, session, state, rows)
    ids = _unpack(packed) if ascending else iter(sorted(_unpack(packed)))
    ctx.store.save_alignment(
        state.alignment, session.job_id, session.dataset, ids, replace=state.replace
    )
    state.stored = True


@method("psi.finish", kinds=("psi",))
def finish(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """At the leader: intersect, check every party's minimum, send each follower its result."""
    state = _state(session)
    if not isinstance(state.role, Leader) or not state.pump.idle:
        raise ProtocolError("psi.finish is for the leader, after its ids are sent")
    result = state.role.finish()
    state.leader_rows = result.rows
    return CallReply(meta={"count": result.count}, outbox=dict(result.outbox))


@method("psi.result", kinds=("psi",))
def result(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """At a follower: check the leader's result against own policy; store the alignment if told."""
    state = _state(session)
    if not isinstance(state.role, Follower):
        raise ProtocolError("psi.result is for followers")
    leader = state.pump.leader
    if len(req.inbox) != 1 or leader not in req.inbox:
        raise ProtocolError("psi.result expects the leader's result")
    outcome = state.role.on_result(req.inbox[leader])
    if outcome.rows is not None and state.alignment is not None:
        _save(ctx, session, state, outcome.rows)
    session.state.pop("psi", None)
    return CallReply(meta={"count": outcome.count, "stored": state.stored})


@method("psi.commit", kinds=("psi",))
def commit(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """At the leader, once every follower took its result: store the leader's alignment."""
    state = _state(session)
    if isinstance(state.role, Leader) and state.leader_rows is not None and state.alignment:
        _save(ctx, session, state, state.leader_rows)
    session.state.pop("psi", None)
    return CallReply(meta={"stored": state.stored})


@method("psi.abort", kinds=("psi",))
def abort(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """After a failed PSI: delete the alignment this job stored here, if any; drop the state."""
    name, deleted = _settings(session, req).alignment, False
    if name:
        try:
            deleted = ctx.store.alignment_info(name).job_id == session.job_id
            if deleted:
                ctx.store.delete_alignment(name)
        except NotFound:
            pass
    session.state.pop("psi", None)
    return CallReply(meta={"deleted": deleted})
