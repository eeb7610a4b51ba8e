"""The ``stability`` step at a silo: the population stability index of its own columns (and, at
the label holder with a score table, of the score) between the training population and the
scoring batch the accepted step names.

Nothing runs unless the silo's policy sets ``release_stability``. The index is released only
when both populations have at least ``min_rows_per_statistic`` rows, per-bin shares only when
every bin does (``index.Stability.released``); the full report (edges and counts) stays in the
silo's ``reports/`` folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from fedsilo.errors import DataError, PolicyError
from fedsilo.jobschema import check_step
from fedsilo.jobspec import input_alignment
from fedsilo.ml.report import StabilityRow, write_stability_report
from fedsilo.protocols.stability.index import Stability, stability
from fedsilo.protocols.stats.party import column_labels
from fedsilo.silo_node.context import SiloContext
from fedsilo.silo_node.methods import CallReply, CallRequest, method
from fedsilo.silo_node.session import JobSession

__all__: list[str] = []


def _row(name: str, s: Stability) -> StabilityRow:
    return {
        "name": name,
        "index": s.index,
        "band": None,
        "edges": s.edges.tolist(),
        "expected": s.expected.tolist(),
        "actual": s.actual.tolist(),
        "expected_rows": int(s.expected.sum()),
        "actual_rows": int(s.actual.sum()),
    }


def _scores(ctx: SiloContext, table: str, version: str, ids: list[str], what: str) -> np.ndarray:
    """The scores of ``version`` in ``table`` for those of ``ids`` that have one."""
    t = ctx.store.ensure_score_table(table)
    stmt = select(t.c.id, t.c.score).where(t.c.model_version == version)
    with ctx.store.engine.connect() as conn:
        by_id = {str(i): float(s) for i, s in conn.execute(stmt)}
    out = [by_id[i] for i in ids if i in by_id]
    if not out:
        raise DataError(
            f"table '{table}' holds no score of version '{version[:60]}' for {what[:80]}"
        )
    return np.asarray(out, dtype=np.float64)


@dataclass(frozen=True)
class _Populations:
    """The training rows (an alignment, read over the dataset it was made from) and the batch
    (an alignment of the job's dataset, or the job's whole dataset), as the accepted step says."""

    train: str
    batch: str
    x_train: np.ndarray
    x_batch: np.ndarray

    def ids(self, ctx: SiloContext, session: JobSession, which: str) -> list[str]:
        if which == "dataset":
            return [i for chunk in ctx.data.iter_ids(session.dataset) for i in chunk]
        return [i for chunk in ctx.store.iter_alignment_ids(which) for i in chunk]


def _populations(
    ctx: SiloContext, session: JobSession, req: CallRequest, values: dict[str, Any]
) -> _Populations:
    cols = ctx.job_columns(session)
    train = str(values["train_alignment"])
    x_train = ctx.data.load_aligned(ctx.store.alignment_info(train).dataset, train, cols)
    if values["batch"] == "dataset":
        x_batch, _ = ctx.data.load_dataset(session.dataset, cols, with_label=False)
        return _Populations(train, "dataset", x_train, x_batch)
    batch = input_alignment(session.spec, req.step_index)
    return _Populations(train, batch, x_train, ctx.data.load_aligned(session.dataset, batch, cols))


@method("stability.index", kinds=("stability",))
def index(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """Per characteristic (and the score at the label holder): the index, its band, the shares."""
    policy = ctx.config.policy
    if not policy.release_stability:
        raise PolicyError("policy does not release stability indexes ([policy] release_stability)")
    values = check_step(req.spec_step, req.step_index)
    pop = _populations(ctx, session, req, values)
    bins, min_rows = int(values["bins"]), policy.min_rows_per_statistic
    labels = column_labels(ctx.job_columns(session), release_names=policy.release_feature_names)
    found = {
        label: stability(pop.x_train[:, j], pop.x_batch[:, j], bins)
        for j, label in enumerate(labels)
    }
    meta: dict[str, Any] = {
        "train_alignment": pop.train,
        "batch": pop.batch,
        "characteristics": {label: s.released(min_rows) for label, s in found.items()},
    }
    rows = [_row(label, s) for label, s in found.items()]
    table = values.get("score_table")
    if table and session.role == "active":
        version = str(values["score_version"])
        expected, actual = (
            _scores(ctx, table, version, pop.ids(ctx, session, which), f"'{which}'")
            for which in (pop.train, pop.batch)
        )
        s = stability(expected, actual, bins)
        meta["score"] = s.released(min_rows)
        rows.append(_row(f"score ({version})", s))
    for row in rows:
        row["band"] = _band(row, meta)
    meta["report"] = str(_report(ctx, session, pop.train, pop.batch, rows, min_rows))
    return CallReply(meta=meta)


def _band(row: StabilityRow, meta: dict[str, Any]) -> str | None:
    released = meta["characteristics"].get(row["name"]) or meta.get("score") or {}
    return released.get("band") if isinstance(released, dict) else None


def _report(
    ctx: SiloContext,
    session: JobSession,
    train: str,
    batch: str,
    rows: list[StabilityRow],
    min_rows: int,
) -> Path:
    folder = ctx.config.reports
    stem = f"{session.job_id}-stability-{ctx.party}"
    html, _ = write_stability_report(
        folder / f"{stem}.html",
        folder / f"{stem}.json",
        title=f"{session.job_id}: population stability at {ctx.party}",
        summary={"training population": train, "scoring batch": batch, "party": ctx.party},
        rows=rows,
        min_rows=min_rows,
    )
    return html
