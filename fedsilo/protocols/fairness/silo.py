"""The fairness audit at a silo: the attribute holder's two methods and the label holder's two.

Everything is read from the accepted spec (``spec.fairness_step``): which silo holds the
attributes, which columns, bands and intersections, the alignment, the score table. The
attribute holder releases nothing unless its ``[policy] release_group_counts`` names every
attribute column, and withholds by itself every group below its ``min_rows_per_statistic``
(``groups.plan_groups``); the label holder reads the scores of the step's model version from its
own score table. Method order: ``conversation.METHODS``.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import select

from fedsilo.errors import DataError, PolicyError, ProtocolError
from fedsilo.message import Message
from fedsilo.ml.report import write_fairness_report
from fedsilo.protocols.fairness.audit import (
    GROUPS,
    MASKED,
    SHARES,
    AttributeHolder,
    GroupCounts,
    LabelHolder,
)
from fedsilo.protocols.fairness.groups import GroupPlan, plan_groups
from fedsilo.protocols.fairness.metrics import audit_metrics
from fedsilo.protocols.fairness.spec import FairnessStep, fairness_step
from fedsilo.silo_node.context import SiloContext
from fedsilo.silo_node.methods import CallReply, CallRequest, method
from fedsilo.silo_node.session import JobSession

_ATTRIBUTE = "fairness_attribute_holder"
_LABEL = "fairness_label_holder"


def _step(session: JobSession, req: CallRequest) -> FairnessStep:
    return fairness_step(session.spec, req.step_index)


def _sender(req: CallRequest, kind: str, expected: str) -> Message:
    sender, msg = req.only_message(kind)
    if sender != expected:
        raise ProtocolError(f"'{kind}' must come from '{expected}', not '{sender[:40]}'")
    return msg


def _plan(ctx: SiloContext, session: JobSession, step: FairnessStep) -> GroupPlan:
    """This silo's released groups of the aligned rows, under its policy and minimum."""
    ctx.config.policy.check_group_counts(session.dataset, step.columns)
    values = ctx.data.load_aligned(session.dataset, step.alignment, step.columns)
    return plan_groups(
        {c: values[:, k] for k, c in enumerate(step.columns)},
        step.groupings,
        step.bands,
        ctx.config.policy.min_rows_per_statistic,
    )


@method("fairness.groups", kinds=("fairness",))
def groups(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """At the attribute holder: its released groups and the row ciphertexts, to the label holder."""
    step = _step(session, req)
    if ctx.party != step.attribute_party:
        raise PolicyError(
            f"the accepted fairness step reads attributes at '{step.attribute_party}'"
        )
    plan = _plan(ctx, session, step)
    holder = AttributeHolder(ctx.party, plan, step.audit)
    session.state[_ATTRIBUTE] = holder
    msg = holder.groups_message()
    released = {
        "groups": [[s.grouping, s.label, s.rows] for s in plan.slots],
        "withheld": plan.withheld,
    }
    return CallReply(meta=released, outbox={session.active_party("fairness"): msg})


@method("fairness.open", kinds=("fairness",))
def open_sums(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """At the attribute holder: open the label holder's masked sums (``AttributeHolder``)."""
    holder = session.state.get(_ATTRIBUTE)
    if not isinstance(holder, AttributeHolder):
        raise ProtocolError("fairness.open before fairness.groups")
    label = session.active_party("fairness")
    masked = _sender(req, MASKED, label)
    session.state.pop(_ATTRIBUTE)  # one opening per audit
    return CallReply(outbox={label: holder.shares_message(masked)})


def read_scores(ctx: SiloContext, table: str, version: str, alignment: str) -> np.ndarray:
    """The score of ``version`` of every aligned row, in alignment order (all must exist)."""
    tbl = ctx.store.ensure_score_table(table)
    stmt = select(tbl.c.id, tbl.c.score).where(tbl.c.model_version == version)
    with ctx.store.engine.connect() as conn:
        by_id = {str(i): float(s) for i, s in conn.execute(stmt)}
    ids = [i for chunk in ctx.store.iter_alignment_ids(alignment) for i in chunk]
    missing = sum(1 for i in ids if i not in by_id)
    if missing:
        raise DataError(
            f"{missing} of {len(ids)} rows of alignment '{alignment[:80]}' have no score of "
            f"model '{version[:80]}' in table '{table}'"
        )
    return np.array([by_id[i] for i in ids], dtype=np.float64)


def _scores(
    ctx: SiloContext, session: JobSession, req: CallRequest, step: FairnessStep
) -> np.ndarray:
    """The audited scores: those the job's evaluate step kept, or a score table's."""
    if step.evaluate_index is None:
        return read_scores(ctx, step.table, _version(step, req), step.alignment)
    kept = session.state.get("evaluated_scores", {}).get(step.evaluate_index)
    if kept is None:
        raise ProtocolError("the evaluate step before this fairness step left no scores here")
    alignment, scores = kept
    if alignment != step.alignment:
        raise PolicyError(
            f"the evaluate step scored '{alignment[:80]}', not '{step.alignment[:80]}'"
        )
    return np.asarray(scores, dtype=np.float64)


def _version(step: FairnessStep, req: CallRequest) -> str:
    version = step.model or req.meta.get("version")
    if not isinstance(version, str) or not version:
        raise ProtocolError("the fairness step names no model version for the scores")
    return version


@method("fairness.mask", kinds=("fairness",))
def mask(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """At the label holder: masked per-group sums of its scores and labels, to the attribute
    holder (``LabelHolder``)."""
    if session.role != "active":
        raise PolicyError(
            f"fairness sums are formed at the label holder, not role '{session.role}'"
        )
    step = _step(session, req)
    msg = _sender(req, GROUPS, step.attribute_party)
    labels = ctx.data.load_aligned_labels(session.dataset, step.alignment)
    scores = _scores(ctx, session, req, step)
    holder = LabelHolder(ctx.party, scores, labels, step.audit)
    session.state[_LABEL] = holder
    return CallReply(outbox={step.attribute_party: holder.masked_message(msg)})


@method("fairness.finish", kinds=("fairness",))
def finish(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """At the label holder: unmask, compute the metrics, write the report, release the metrics
    (each under this silo's own ``min_rows_per_statistic`` too)."""
    holder = session.state.pop(_LABEL, None)
    if not isinstance(holder, LabelHolder):
        raise ProtocolError("fairness.finish before fairness.mask")
    step = _step(session, req)
    counts = holder.finish(_sender(req, SHARES, step.attribute_party))
    return CallReply(meta=_release(ctx, session, req, step, holder, counts))


@method("fairness.local", kinds=("fairness",))
def local(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """At a label holder that holds the attributes itself: the same audit, no other silo."""
    step = _step(session, req)
    if session.role != "active" or ctx.party != step.attribute_party:
        raise PolicyError("a local fairness audit runs at a label holder holding the attributes")
    holder = LabelHolder(
        ctx.party,
        _scores(ctx, session, req, step),
        ctx.data.load_aligned_labels(session.dataset, step.alignment),
        step.audit,
    )
    plan = _plan(ctx, session, step)
    meta = _release(ctx, session, req, step, holder, holder.plain_counts(plan))
    return CallReply(meta={**meta, "withheld": plan.withheld})


def _release(
    ctx: SiloContext,
    session: JobSession,
    req: CallRequest,
    step: FairnessStep,
    holder: LabelHolder,
    counts: list[GroupCounts],
) -> dict[str, object]:
    """Metrics (under this silo's own minimum too) and the report: what the label holder
    releases."""
    metrics = audit_metrics(counts, holder.thresholds, ctx.config.policy.min_rows_per_statistic)
    folder = ctx.config.reports
    stem = f"{session.job_id}-fairness-{req.step_index + 1}"
    html, js = write_fairness_report(
        folder / f"{stem}.html",
        folder / f"{stem}.json",
        title=f"{_version(step, req)}: fairness audit at {ctx.party}",
        summary={
            "model": _version(step, req),
            "alignment": step.alignment,
            "attribute holder": step.attribute_party,
            "rows": len(holder.scores),
            "score bins": holder.bins,
        },
        audit=metrics,
    )
    return {"metrics": metrics, "report": str(html), "report_json": str(js)}
