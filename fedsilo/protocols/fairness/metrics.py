"""Fairness metrics from group counts: per group and the gaps between a grouping's groups.

Definitions follow fairlearn (``selection_rate``, ``true_positive_rate``, ``false_positive_rate``,
``demographic_parity_difference`` / ``_ratio``, ``equalized_odds_difference`` with
``method="between_groups"``); a row is *selected* when its score is at least the threshold. A
statistic over fewer rows than the label holder's ``min_rows_per_statistic`` (positives for the
TPR, negatives for the FPR, selected rows for the precision, a band's rows for calibration) is
withheld (None), as the evaluation report does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fedsilo.protocols.fairness.audit import GroupCounts

__all__ = ["audit_metrics", "group_metrics", "summary_gaps"]


def _ratio(num: int, den: int, min_rows: int) -> float | None:
    return num / den if den >= max(1, min_rows) else None


def group_metrics(g: GroupCounts, thresholds: Sequence[float], min_rows: int) -> dict[str, Any]:
    """One group's metrics (JSON-ready)."""
    at = []
    for t, sel, tp in zip(thresholds, g.selected, g.true_positives, strict=True):
        at.append(
            {
                "threshold": t,
                "selected": sel,
                "selection_rate": _ratio(sel, g.rows, min_rows),
                "approval_rate": _ratio(g.rows - sel, g.rows, min_rows),
                "tpr": _ratio(tp, g.positives, min_rows),
                "fpr": _ratio(sel - tp, g.negatives, min_rows),
                "precision": _ratio(tp, sel, min_rows),
            }
        )
    bands = [
        {
            "rows": n,
            "observed_rate": _ratio(p, n, min_rows),
            "mean_score": m if n >= max(1, min_rows) else None,
        }
        for n, p, m in zip(g.band_rows, g.band_positives, g.band_mean_score, strict=True)
    ]
    pairs = g.positives * g.negatives
    enough = min(g.positives, g.negatives) >= max(1, min_rows)
    return {
        "grouping": g.grouping,
        "group": g.label,
        "rows": g.rows,
        "positives": g.positives,
        "base_rate": _ratio(g.positives, g.rows, min_rows),
        "auc": g.auc_pairs2 / (2 * pairs) if enough else None,
        "thresholds": at,
        "calibration": bands,
    }


def _spread(values: list[float | None]) -> tuple[float | None, float | None]:
    """(max - min, min / max) over the groups that have the value; None with fewer than two."""
    vals = [v for v in values if v is not None]
    if len(vals) < 2:
        return None, None
    hi, lo = max(vals), min(vals)
    return hi - lo, (lo / hi if hi > 0 else None)


def summary_gaps(groups: list[dict[str, Any]], thresholds: Sequence[float]) -> dict[str, Any]:
    """Per grouping: demographic parity difference and ratio, equalized-odds difference per
    threshold, and the AUC gap."""
    out: dict[str, Any] = {}
    for name in dict.fromkeys(g["grouping"] for g in groups):
        members = [g for g in groups if g["grouping"] == name]
        per_t = []
        for k, t in enumerate(thresholds):
            dp, ratio = _spread([g["thresholds"][k]["selection_rate"] for g in members])
            tpr, _ = _spread([g["thresholds"][k]["tpr"] for g in members])
            fpr, _ = _spread([g["thresholds"][k]["fpr"] for g in members])
            eo = None if tpr is None or fpr is None else max(tpr, fpr)
            per_t.append(
                {
                    "threshold": t,
                    "demographic_parity_difference": dp,
                    "demographic_parity_ratio": ratio,
                    "equalized_odds_difference": eo,
                }
            )
        auc_gap, _ = _spread([g["auc"] for g in members])
        out[name] = {"groups": len(members), "thresholds": per_t, "auc_gap": auc_gap}
    return out


def audit_metrics(
    counts: list[GroupCounts], thresholds: Sequence[float], min_rows: int
) -> dict[str, Any]:
    """Every group's metrics and the gaps: what the label holder releases and reports."""
    groups = [group_metrics(g, thresholds, min_rows) for g in counts]
    return {
        "thresholds": list(thresholds),
        "groups": groups,
        "gaps": summary_gaps(groups, thresholds),
        "min_rows": min_rows,
    }
