"""The ``select`` step at a silo: keep those of its own columns that pass the step's criteria.

Each silo decides for its own columns with what it holds: the IV its woe step stored (the label
holder's own; a passive silo's only if the label holder's ``[policy] release_woe_iv`` sent it),
the importance in its own part of a model this job trained. For ``max_vif`` /
``max_correlation`` the coordinator decided over the stats step's released correlation matrix
and sends each silo the decision for its own columns only (by name, or ``#i`` when the silo does
not release names: the i-th column it profiled); the silo checks they are its own. Nothing is
sent to another silo; the coordinator learns how many columns each silo kept. The kept columns
are stored under the job (:func:`fedsilo.jobspec.selection_key`) and
:meth:`fedsilo.silo_node.context.SiloContext.job_columns` gives later steps only those.
"""

from __future__ import annotations

from typing import Any

from fedsilo.errors import PolicyError, ProtocolError
from fedsilo.jobschema import check_step
from fedsilo.jobspec import part_id, previous_step, selection_key
from fedsilo.protocols.select.criteria import COLLINEARITY_KEYS, choose, importance_of_part
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


def _dropped(
    ctx: SiloContext, session: JobSession, req: CallRequest, values: dict[str, Any]
) -> dict[str, list[str]]:
    """The coordinator's collinearity decision for this silo's own columns, checked."""
    sent = req.meta.get("dropped")
    if not isinstance(sent, dict):
        raise ProtocolError("select: the coordinator sent no collinearity decision")
    profiled = ctx.job_columns(session)  # what the stats step profiled, in its order
    out: dict[str, list[str]] = {}
    for key in COLLINEARITY_KEYS:
        if values.get(key) is None:
            continue
        labels = sent.get(key)
        if not isinstance(labels, list):
            raise ProtocolError(f"select: the coordinator sent no '{key}' decision")
        names = []
        for label in (str(x) for x in labels):
            if label.startswith("#") and label[1:].isdigit() and int(label[1:]) < len(profiled):
                names.append(profiled[int(label[1:])])
            elif label in profiled:
                names.append(label)
            else:
                raise ProtocolError(f"select: '{key}' names '{label[:64]}', not a column of mine")
        out[key] = names
    return out


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
        "dropped": lambda: _dropped(ctx, session, req, values),
    }
    kept = choose(values, columns, inputs)
    ctx.store.save_checkpoint(session.job_id, selection_key(index), {"columns": kept})
    return CallReply(meta={"kept": len(kept), "of": len(columns)})
