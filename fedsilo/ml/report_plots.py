"""The figures of the evaluation report, drawn with matplotlib into PNG bytes.

Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas directly, not through
``pyplot``: no global backend switch, no global figure registry, safe from worker threads.
Every line is also told apart by its dash pattern, so a report printed in black and white reads.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = [
    "calibration_png",
    "gain_png",
    "group_bars_png",
    "group_calibration_png",
    "importance_png",
    "ks_png",
    "roc_png",
]

#: inches and dots per inch of one plot: sharp on screen and in print, ~40 KB per PNG.
_SIZE = (6.4, 4.4)
_DPI = 110
_FED: dict[str, Any] = {"color": "#1f4e79", "linestyle": "-", "linewidth": 2.0}
_BASE: dict[str, Any] = {"color": "#c55a11", "linestyle": "--", "linewidth": 1.8}
_CHANCE: dict[str, Any] = {"color": "#888888", "linestyle": ":", "linewidth": 1.0}

Series = dict[str, Any]  # {"label": str, "x": list[float], "y": list[float]}


def _figure() -> tuple[Figure, Axes]:
    fig = Figure(figsize=_SIZE, dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.grid(True, color="#dddddd", linewidth=0.6)
    return fig, ax


def _png(fig: Figure) -> bytes:
    """PNG bytes without the matplotlib version stamp (reports differ only when numbers do)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _style(index: int) -> dict[str, Any]:
    return _FED if index == 0 else _BASE


def roc_png(series: Sequence[Series]) -> bytes:
    """ROC curves (first series federated, second label-holder-only) over the chance line."""
    fig, ax = _figure()
    ax.plot([0, 1], [0, 1], label="chance", **_CHANCE)
    for i, s in enumerate(series):
        ax.plot(s["x"], s["y"], label=s["label"], **_style(i))
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1.01),
        xlabel="false positive rate",
        ylabel="true positive rate",
        title="ROC curve",
    )
    ax.legend(loc="lower right")
    return _png(fig)


def ks_png(
    share: Sequence[float],
    tpr: Sequence[float],
    fpr: Sequence[float],
    *,
    ks: float,
    at_share: float,
    threshold: float,
) -> bytes:
    """Cumulative share of positives and negatives flagged, highest scores first, KS marked."""
    fig, ax = _figure()
    ax.plot(share, tpr, label="positives flagged (TPR)", **_FED)
    ax.plot(share, fpr, label="negatives flagged (FPR)", **_BASE)
    lo, hi = _at(share, fpr, at_share), _at(share, tpr, at_share)
    ax.vlines(at_share, min(lo, hi), max(lo, hi), colors="#222222", linewidth=1.4)
    ax.annotate(
        f"KS = {ks:.3f}\nscore ≥ {threshold:.3g}",
        (at_share, (lo + hi) / 2),
        xytext=(8, 0),
        textcoords="offset points",
        va="center",
    )
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1.01),
        xlabel="share of rows flagged (highest scores first)",
        ylabel="cumulative share",
        title="KS curve",
    )
    ax.legend(loc="lower right")
    return _png(fig)


def _at(xs: Sequence[float], ys: Sequence[float], x: float) -> float:
    """The y of the point whose x is nearest ``x`` (the KS point is one of the curve's points)."""
    best = min(range(len(xs)), key=lambda i: abs(xs[i] - x))
    return float(ys[best])


def calibration_png(series: Sequence[Series]) -> bytes:
    """Reliability diagram: mean predicted probability against the observed rate, per bin."""
    fig, ax = _figure()
    ax.plot([0, 1], [0, 1], label="perfectly calibrated", **_CHANCE)
    for i, s in enumerate(series):
        ax.plot(s["x"], s["y"], marker="o", markersize=4, label=s["label"], **_style(i))
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1.01),
        xlabel="mean predicted probability",
        ylabel="observed positive rate",
        title="Calibration",
    )
    ax.legend(loc="upper left")
    return _png(fig)


def gain_png(series: Sequence[Series]) -> bytes:
    """Cumulative gain by decile: share of all positives found in the top k deciles."""
    fig, ax = _figure()
    ax.plot([0, 1], [0, 1], label="random order", **_CHANCE)
    for i, s in enumerate(series):
        ax.plot(
            [0.0, *s["x"]], [0.0, *s["y"]], marker="o", markersize=4, label=s["label"], **_style(i)
        )
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1.01),
        xlabel="share of rows (by decile, highest scores first)",
        ylabel="share of positives found",
        title="Cumulative gain",
    )
    ax.legend(loc="lower right")
    return _png(fig)


def importance_png(
    party: str,
    names: Sequence[str],
    gains: Sequence[float],
    *,
    xlabel: str = "total gain of the splits on the feature",
    title: str = "Feature importance",
) -> bytes:
    """Horizontal bars of total split gain (or ``xlabel``) per feature, largest on top."""
    height = max(2.0, 0.32 * len(names) + 1.2)
    fig = Figure(figsize=(_SIZE[0], height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.barh(range(len(names))[::-1], gains, color=_FED["color"])
    ax.set_yticks(range(len(names))[::-1], labels=list(names))
    ax.set(xlabel=xlabel, title=f"{title}: {party}")
    ax.grid(True, axis="x", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    return _png(fig)


# --- fairness audit (fedsilo/protocols/fairness) ------------------------------------------------


def group_bars_png(
    title: str, labels: Sequence[str], bars: Mapping[str, Sequence[float | None]]
) -> bytes:
    """Grouped bars: one cluster per group, one bar per metric (a withheld value is left out)."""
    fig, ax = _figure()
    width = 0.8 / max(1, len(bars))
    colors = ("#1f4e79", "#c55a11", "#548235", "#7f6000")
    hatches = ("", "//", "..", "xx")
    for k, (name, values) in enumerate(bars.items()):
        xs = [i + k * width for i, v in enumerate(values) if v is not None]
        ys = [v for v in values if v is not None]
        ax.bar(xs, ys, width, label=name, color=colors[k % 4], hatch=hatches[k % 4])
    ax.set_xticks([i + width * (len(bars) - 1) / 2 for i in range(len(labels))])
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax.set(ylim=(0, 1.01), title=title)
    ax.legend(loc="upper right", fontsize=8)
    return _png(fig)


def group_calibration_png(title: str, series: Sequence[Series]) -> bytes:
    """Calibration per group: mean score against observed rate per band, one line per group."""
    fig, ax = _figure()
    ax.plot([0, 1], [0, 1], label="perfectly calibrated", **_CHANCE)
    styles = ("-", "--", "-.", ":")
    for i, s in enumerate(series):
        ax.plot(s["x"], s["y"], marker="o", markersize=3, linestyle=styles[i % 4], label=s["label"])
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1.01),
        xlabel="mean score",
        ylabel="observed positive rate",
        title=title,
    )
    ax.legend(loc="upper left", fontsize=8)
    return _png(fig)
