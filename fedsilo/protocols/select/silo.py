"""The ``select`` step at a silo: keep those of its own columns that pass the step's criteria.

Each silo decides for its own columns with what it holds: the IV its woe step stored (the label
holder's own; a passive silo's only if the label holder's ``[policy] release_woe_iv`` sent it),
the importance in its own part of a model this job trained. Nothing is sent to another silo; the
coordinator learns how many columns each silo kept. The kept columns are stored under the job
(:func:`fedsilo.jobspec.selection_key`) and :meth:`fedsilo.silo_node.context.SiloContext.
job_columns` gives later steps only those.
"""

from __future__ import annotations

from typing import Any

from fedsilo.errors import PolicyError, ProtocolError
from fedsilo.jobschema import check_step
from fedsilo.jobspec import part_id, previous_step, selection_key
from fedsilo.protocols.select.criteria import choose, importance_of_part
from fedsilo.protocols.woe.silo import load_state
from fedsilo.silo_node.context import SiloContext
from fedsilo.silo_node.methods import CallReply, CallRequest, method
from fedsilo.silo_node.predict import load_part
from fedsilo.silo_node.session import JobSession


def _iv(ctx: SiloContext, session: JobSession, index: int) -> dict[str, float]:
    state = load_state(ctx, session, index, "select")
    if state.iv is None:
        raise PolicyError(
            "select by IV: this silo holds no IV for its characteristics (the label holder's "
            "[policy] release_woe_iv is off)"
        )
    return {c.name: v for c, v in zip(state.characteristics, state.iv, strict=True)}


def _importance(ctx: SiloContext, session: JobSession, index: int, kind: str) -> dict[str, float]:
    if previous_step(session.spec, index, kind) is None:
        raise ProtocolError(f"select by importance needs a {kind} step before it in the job")
    stored_kind, payload = load_part(ctx, part_id(session.job_id, kind))
    return importance_of_part(stored_kind, payload)


@method("select.apply", kinds=("select",))
def apply(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """Choose this silo's columns; release how many it kept of how many."""
    values: dict[str, Any] = check_step(req.spec_step, req.step_index)
    columns = ctx.job_columns(session, req.step_index)
    index = req.step_index
    kind = values.get("importance")
    inputs = {
        "iv": lambda: _iv(ctx, session, index),
        "importance": lambda: _importance(ctx, session, index, str(kind)),
    }
    kept = choose(values, columns, inputs)
    ctx.store.save_checkpoint(session.job_id, selection_key(index), {"columns": kept})
    return CallReply(meta={"kept": len(kept), "of": len(columns)})
