"""Split an alignment into train / validation / test alignments at every silo.

The label holder draws a stratified split of the aligned positions and sends the positions
(sealed) to the other silos; each silo stores the derived alignments ``NAME-train``,
``NAME-valid`` and ``NAME-test`` in its own database.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from fedsilo.errors import ProtocolError
from fedsilo.jobspec import split_settings
from fedsilo.leakage import register_kind
from fedsilo.message import Message
from fedsilo.protocols.split.stratify import stratified_positions
from fedsilo.silo_node.context import SiloContext
from fedsilo.silo_node.methods import CallReply, CallRequest, method
from fedsilo.silo_node.session import JobSession

POSITIONS = register_kind(
    "split.positions",
    reveals="which positions of the shared alignment are used for training, validation and "
    "test (a random, label-stratified partition of the intersection)",
)
PARTS = ("train", "valid", "test")


def _select(ids: Iterator[list[str]], positions: np.ndarray) -> Iterator[str]:
    """The ids at sorted ``positions`` of a chunked id stream."""
    at, k = 0, 0
    for chunk in ids:
        while k < len(positions) and positions[k] < at + len(chunk):
            yield chunk[int(positions[k]) - at]
            k += 1
        at += len(chunk)
    if k != len(positions):
        raise ProtocolError("split positions run past the end of the alignment")


def _save_parts(
    ctx: SiloContext, session: JobSession, alignment: str, parts: dict[str, np.ndarray]
) -> dict[str, int]:
    sizes = {}
    for part in PARTS:
        positions = parts[part]
        if len(positions) and (np.any(np.diff(positions) <= 0) or positions[0] < 0):
            raise ProtocolError("split positions must be strictly increasing")
        name = f"{alignment}-{part}"
        ids = _select(ctx.store.iter_alignment_ids(alignment), positions)
        ctx.store.save_alignment(name, session.job_id, session.dataset, ids, replace=True)
        sizes[part] = len(positions)
    return sizes


@method("split.draw", kinds=("split",))
def draw(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """At the label holder: draw the split, store it, send positions to the others."""
    split = split_settings(session.spec, req.step_index)
    alignment = split.alignment
    labels = ctx.data.load_aligned_labels(session.dataset, alignment)
    parts = stratified_positions(
        labels,
        test_fraction=split.test_fraction,
        valid_fraction=split.valid_fraction,
        seed=split.seed,
    )
    sizes = _save_parts(ctx, session, alignment, parts)
    msg = Message(POSITIONS, meta={"alignment": alignment}, arrays=parts)
    others = [p for p in session.parties if p != ctx.party]
    return CallReply(meta={"sizes": sizes}, outbox={p: msg for p in others})


@method("split.apply", kinds=("split",))
def apply(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """At every other silo: store the derived alignments from the label holder's positions."""
    sender, msg = req.only_message(POSITIONS)
    if sender != session.active_party("split"):
        raise ProtocolError("split positions must come from the label holder")
    alignment = split_settings(session.spec, req.step_index).alignment
    if msg.meta.get("alignment") != alignment:
        raise ProtocolError("split positions name another alignment than the accepted job")
    parts = {p: msg.array(p).astype(np.int64) for p in PARTS}
    sizes = _save_parts(ctx, session, alignment, parts)
    return CallReply(meta={"sizes": sizes})
