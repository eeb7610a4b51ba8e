"""The ``stability`` step at a silo: the population stability index of its own columns (and, at
the label holder with a score table, of the score) between the training population and the
scoring batch the accepted step names.

Nothing runs unless the silo's policy sets ``release_stability``. The index is released only
when both populations have at least ``min_rows_per_statistic`` rows, per-bin shares only when
every bin does (``index.Stability.released``); the full report (edges and counts) stays in the
silo's ``reports/`` folder.
"""

from __future__ import annotations

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


def _scores(ctx: SiloContext, table: str, version: str, alignment: str) -> np.ndarray:
    """The scores of ``version`` in ``table`` for the ids of ``alignment`` that have one."""
    t = ctx.store.ensure_score_table(table)
    stmt = select(t.c.id, t.c.score).where(t.c.model_version == version)
    with ctx.store.engine.connect() as conn:
        by_id = {str(i): float(s) for i, s in conn.execute(stmt)}
    out = [by_id[i] for ids in ctx.store.iter_alignment_ids(alignment) for i in ids if i in by_id]
    if not out:
        raise DataError(
            f"table '{table}' holds no score of version '{version[:60]}' for alignment "
            f"'{alignment[:60]}'"
        )
    return np.asarray(out, dtype=np.float64)


@method("stability.index", kinds=("stability",))
def index(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """Per characteristic (and the score at the label holder): the index, its band, the shares."""
    policy = ctx.config.policy
    if not policy.release_stability:
        raise PolicyError("policy does not release stability indexes ([policy] release_stability)")
    values = check_step(req.spec_step, req.step_index)
    train = str(values["train_alignment"])
    batch = input_alignment(session.spec, req.step_index)
    bins, min_rows = int(values["bins"]), policy.min_rows_per_statistic
    cols = ctx.job_columns(session)
    x_train = ctx.data.load_aligned(session.dataset, train, cols)
    x_batch = ctx.data.load_aligned(session.dataset, batch, cols)
    labels = column_labels(cols, release_names=policy.release_feature_names)
    found = {label: stability(x_train[:, j], x_batch[:, j], bins) for j, label in enumerate(labels)}
    meta: dict[str, Any] = {
        "train_alignment": train,
        "alignment": batch,
        "characteristics": {label: s.released(min_rows) for label, s in found.items()},
    }
    rows = [_row(label, s) for label, s in found.items()]
    table = values.get("score_table")
    if table and session.role == "active":
        version = str(values["score_version"])
        s = stability(
            _scores(ctx, table, version, train), _scores(ctx, table, version, batch), bins
        )
        meta["score"] = s.released(min_rows)
        rows.append(_row(f"score ({version})", s))
    for row in rows:
        row["band"] = _band(row, meta)
    meta["report"] = str(_report(ctx, session, train, batch, rows, min_rows))
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
    folder = Path(ctx.config.path).parent / "reports"
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
