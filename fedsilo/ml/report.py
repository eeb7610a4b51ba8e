"""The evaluation report: one self-contained HTML file for people, one JSON file for programs.

The HTML has no script and no external reference: plots are inline base64 PNGs, the style sheet
is inline, so the file can be mailed, archived and printed as it is, and opened on a machine
without network access. Every plot and table carries a stable ``id`` (``plot-roc``,
``table-lift``, ...) and every plot an ``alt`` text, for tests and for screen readers.

The curves are drawn through the same disclosure guard as the metrics (points at least
``metrics["min_rows"]`` rows apart), so the report says nothing the released JSON does not.
A statistic the guard withheld is shown as an em dash and listed at the end with the reason.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fedsilo.errors import DataError
from fedsilo.ml import metrics as m
from fedsilo.ml import report_plots as plots

__all__ = [
    "ImportanceRow",
    "StabilityRow",
    "write_fairness_report",
    "write_report",
    "write_stability_report",
]

#: (feature name, or the mask a silo's policy put in its place; total gain; number of splits)
ImportanceRow = tuple[str, float, int]
#: features drawn per party in the importance plot (the table lists all of them).
_TOP_FEATURES = 15
#: most points on a plotted curve.
_PLOT_POINTS = 400
_FED_LABEL = "federated"
_BASE_LABEL = "label holder only"


def write_report(
    path_html: str | os.PathLike[str],
    path_json: str | os.PathLike[str],
    *,
    title: str,
    model_summary: Mapping[str, Any],
    metrics: Mapping[str, Any],
    baseline_metrics: Mapping[str, Any] | None,
    importance: Mapping[str, Sequence[ImportanceRow]] | None,
    y: npt.ArrayLike,
    scores: npt.ArrayLike,
    baseline_scores: npt.ArrayLike | None = None,
    shap_importance: Mapping[str, Sequence[tuple[str, float]]] | None = None,
    scorecard: Mapping[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write the HTML report and its JSON twin (each atomically) and return both paths.

    ``metrics`` / ``baseline_metrics`` come from :func:`fedsilo.ml.metrics.evaluate` on ``y``
    with ``scores`` / ``baseline_scores`` (the same model trained on the label holder's features
    alone: the difference is the federation lift). ``importance`` maps each party to its
    features' ``(name, gain, splits)``; names arrive already masked where policy hides them.
    ``shap_importance`` maps each party to ``(feature, mean |contribution|)`` over the scored
    rows (:class:`fedsilo.ml.explain.ImportanceSum`), shown in its own section.
    ``scorecard`` (a scorecard model): the scale, base points and the points tables of the
    characteristics this silo holds (:func:`fedsilo.ml.woe.points_table`).
    """
    y_arr = np.asarray(y)
    if metrics.get("rows") is not None and metrics["rows"] != y_arr.size:
        raise DataError(f"metrics cover {metrics['rows']} rows but {y_arr.size} labels were given")
    curves = _curves(y_arr, scores, baseline_scores, int(metrics["min_rows"]))
    doc = _document(title, model_summary, metrics, baseline_metrics, importance, curves)
    doc["shap_importance"] = _shap_importance(shap_importance)
    if scorecard is not None:
        doc["scorecard"] = _jsonable(dict(scorecard))
    _write_atomic(Path(path_json), json.dumps(doc, indent=2, allow_nan=False) + "\n")
    _write_atomic(Path(path_html), _html(doc))
    return Path(path_html), Path(path_json)


# --- the numbers -----------------------------------------------------------------------------


def _document(
    title: str,
    model_summary: Mapping[str, Any],
    metrics: Mapping[str, Any],
    baseline: Mapping[str, Any] | None,
    importance: Mapping[str, Sequence[ImportanceRow]] | None,
    curves: dict[str, Any],
) -> dict[str, Any]:
    """Everything the report shows, as plain JSON-ready data (the JSON file is exactly this)."""
    return {
        "title": title,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model_summary": _jsonable(dict(model_summary)),
        "metrics": _jsonable(dict(metrics)),
        "baseline_metrics": _jsonable(dict(baseline)) if baseline is not None else None,
        "federation_lift": _federation_lift(metrics, baseline),
        "importance": _importance(importance) if importance else None,
        "curves": curves,
    }


def _jsonable(value: Any) -> Any:
    """Plain Python scalars for numpy ones, None for non-finite floats (JSON has no NaN)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _federation_lift(
    fed: Mapping[str, Any], base: Mapping[str, Any] | None
) -> dict[str, float | None] | None:
    """Federated minus label-holder-only, per headline metric (None where either is withheld)."""
    if base is None:
        return None
    pairs = {key: (_headline(fed, key), _headline(base, key)) for key in _HEADLINES}
    return {k: (a - b if a is not None and b is not None else None) for k, (a, b) in pairs.items()}


_HEADLINES = {"auc": "AUC", "ks": "KS", "brier": "Brier score", "ece": "Calibration error (ECE)"}


def _headline(metrics: Mapping[str, Any], key: str) -> float | None:
    if key in ("brier", "ece"):
        cal = metrics.get("calibration")
        return cal.get(key) if cal else None
    value = metrics.get(key)
    return float(value) if value is not None else None


def _importance(importance: Mapping[str, Sequence[ImportanceRow]]) -> dict[str, list[dict]]:
    """Rows sorted by gain, each with its share of the total gain of all parties."""
    total = sum(float(g) for rows in importance.values() for _, g, _ in rows) or 1.0
    return {
        str(party): [
            {
                "feature": str(name),
                "gain": float(gain),
                "splits": int(splits),
                "share": float(gain) / total,
            }
            for name, gain, splits in sorted(rows, key=lambda r: -float(r[1]))
        ]
        for party, rows in importance.items()
    }


def _curves(
    y: np.ndarray, scores: npt.ArrayLike, baseline: npt.ArrayLike | None, min_rows: int
) -> dict[str, Any]:
    """The plotted ROC/KS points for each model, under the same guard as the metrics."""
    out: dict[str, Any] = {"federated": _curve(y, scores, min_rows)}
    if baseline is not None:
        out["baseline"] = _curve(y, baseline, min_rows)
    return out


def _curve(y: np.ndarray, scores: npt.ArrayLike, min_rows: int) -> dict[str, Any] | None:
    n_pos = int(np.asarray(y).sum())
    if min(n_pos, y.size - n_pos) < max(min_rows, 1):
        return None
    full = m.roc_curve(y, scores)
    c = m.curve_points(full, min_rows=min_rows, max_points=_PLOT_POINTS)
    points = m.curve_to_json(c)
    points["share"] = [float(v) for v in (c.tp + c.fp) / y.size]
    return points


# --- files -----------------------------------------------------------------------------------


def _write_atomic(path: Path, text: str) -> None:
    """Write next to the target and rename, so a reader never sees half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- HTML --------------------------------------------------------------------------------------


def _html(doc: dict[str, Any]) -> str:
    fed, base = doc["metrics"], doc["baseline_metrics"]
    body = [
        _header(doc),
        _summary_section(fed, base, doc["federation_lift"]),
        _model_section(doc["model_summary"]),
        _roc_section(doc["curves"], fed, base),
        _ks_section(doc["curves"], fed),
        _calibration_section(fed, base),
        _lift_section(fed, base),
        _precision_recall_section(fed),
        _importance_section(doc["importance"]),
        _shap_section(doc.get("shap_importance")),
        _withheld_section(fed, base),
    ]
    if doc.get("scorecard"):
        body.insert(-1, _scorecard_section(doc["scorecard"]))
    return _PAGE.format(title=_e(doc["title"]), style=_STYLE, body="\n".join(body))


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
<main>
{body}
</main>
</body>
</html>
"""

_STYLE = """
body { font: 15px/1.45 "Helvetica Neue", Arial, sans-serif; color: #1a1a1a; margin: 0;
       background: #fff; }
main { max-width: 900px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 2px solid #1f4e79; padding-bottom: 3px; }
h3 { font-size: 15px; margin: 16px 0 6px; }
p.meta, p.note, figcaption { color: #555; font-size: 13px; }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; }
th { background: #eef2f7; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.up { color: #1b6e20; } td.down { color: #a31515; }
figure { margin: 8px 0 16px; }
figure img { max-width: 100%; height: auto; border: 1px solid #e4e4e4; }
.withheld { color: #888; }
@media print {
  main { max-width: none; padding: 0; }
  section, figure, table { break-inside: avoid; }
  h2 { break-after: avoid; }
}
@page { margin: 16mm; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any, digits: int = 3, *, pct: bool = False) -> str:
    """A table cell: an em dash for a withheld value, right-aligned numbers otherwise."""
    if value is None:
        return '<td class="num withheld" title="withheld by policy">—</td>'
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"<td>{_e(value)}</td>"
    if isinstance(value, int):
        return f'<td class="num">{value:,}</td>'
    text = f"{100 * value:.1f}%" if pct else f"{value:.{digits}f}"
    return f'<td class="num">{text}</td>'


def _table(table_id: str, head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """``rows`` hold ready-made ``<td>`` cells (from :func:`_num`)."""
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    tr = "".join(f"<tr>{''.join(cells)}</tr>" for cells in rows)
    return f'<table id="{table_id}"><thead><tr>{th}</tr></thead><tbody>{tr}</tbody></table>'


def _img(plot_id: str, alt: str, png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img id="{plot_id}" alt="{_e(alt)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def _withheld_plot(plot_id: str, what: str) -> str:
    return (
        f'<p class="note withheld" id="{plot_id}-withheld">The {_e(what)} is withheld: '
        "a class has fewer rows than the policy's minimum per statistic.</p>"
    )


def _header(doc: dict[str, Any]) -> str:
    fed = doc["metrics"]
    facts = [f"generated {doc['generated_at']}"]
    if fed.get("rows") is not None:
        facts += [
            f"{fed['rows']:,} rows",
            f"{fed['positives']:,} positives",
            f"base rate {100 * fed['base_rate']:.1f}%",
        ]
    facts.append(f"statistics over fewer than {fed['min_rows']} rows are withheld (—)")
    return (
        f'<header><h1 id="report-title">{_e(doc["title"])}</h1>'
        f'<p class="meta">{_e(" · ".join(facts))}</p></header>'
    )


def _section(section_id: str, heading: str, *parts: str) -> str:
    return f'<section id="{section_id}"><h2>{_e(heading)}</h2>{"".join(parts)}</section>'


def _note(text: str) -> str:
    return f'<p class="note">{text}</p>'


def _summary_section(
    fed: dict[str, Any], base: dict[str, Any] | None, lift: dict[str, Any] | None
) -> str:
    head = ["metric", _FED_LABEL] + ([_BASE_LABEL, "federation lift"] if base else [])
    rows = []
    for key, label in _HEADLINES.items():
        cells = [f"<td>{label}</td>", _num(_headline(fed, key), 4)]
        if base is not None and lift is not None:
            cells += [_num(_headline(base, key), 4), _delta(lift[key], better_up=key in _UP)]
        rows.append(cells)
    note = _note(
        "Federation lift is the federated model minus the same model trained on the label "
        "holder's features alone. Higher is better for AUC and KS, lower for the Brier score "
        "and the calibration error."
    )
    return _section("summary", "Summary", _table("table-summary", head, rows), note if base else "")


_UP = ("auc", "ks")


def _delta(value: float | None, *, better_up: bool) -> str:
    if value is None:
        return _num(None)
    good = (value > 0) == better_up and value != 0
    return f'<td class="num {"up" if good else "down"}">{value:+.4f}</td>'


def _model_section(summary: dict[str, Any]) -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th>{_value_cell(v)}</tr>" for k, v in summary.items())
    return _section("model", "Model", f'<table id="table-model"><tbody>{rows}</tbody></table>')


def _value_cell(value: Any) -> str:
    """Numbers right-aligned, lists of names joined, anything else as compact JSON."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _num(value, 4)
    if isinstance(value, str):
        return f"<td>{_e(value)}</td>"
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return f"<td>{_e(', '.join(value))}</td>"
    return f"<td>{_e(json.dumps(value, sort_keys=True))}</td>"


def _roc_section(curves: dict[str, Any], fed: dict[str, Any], base: dict[str, Any] | None) -> str:
    if curves["federated"] is None:
        return _section("roc", "ROC curve", _withheld_plot("plot-roc", "ROC curve"))
    series = [_roc_series(_FED_LABEL, curves["federated"], fed)]
    if curves.get("baseline") is not None and base is not None:
        series.append(_roc_series(_BASE_LABEL, curves["baseline"], base))
    caption = "Share of positives caught against share of negatives flagged, at every threshold."
    return _section(
        "roc", "ROC curve", _img("plot-roc", "ROC curve", plots.roc_png(series), caption)
    )


def _roc_series(label: str, curve: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    auc = metrics.get("auc")
    text = f"{label} (AUC {auc:.3f})" if auc is not None else label
    return {"label": text, "x": curve["fpr"], "y": curve["tpr"]}


def _ks_section(curves: dict[str, Any], fed: dict[str, Any]) -> str:
    c = curves["federated"]
    if c is None or fed.get("ks") is None:
        return _section("ks", "KS curve", _withheld_plot("plot-ks", "KS curve"))
    gaps = [abs(t - f) for t, f in zip(c["tpr"], c["fpr"], strict=True)]
    at = c["share"][max(range(len(gaps)), key=gaps.__getitem__)]
    ks, threshold = fed["ks"], fed["ks_threshold"]
    png = plots.ks_png(c["share"], c["tpr"], c["fpr"], ks=ks, at_share=at, threshold=threshold)
    caption = (
        f"KS = {ks:.3f}: the widest gap between the shares of positives and of negatives "
        f"flagged, reached when flagging scores ≥ {threshold:.4g}."
    )
    return _section("ks", "KS curve", _img("plot-ks", "KS curve", png, caption))


def _calibration_section(fed: dict[str, Any], base: dict[str, Any] | None) -> str:
    cal = fed.get("calibration")
    if not cal:
        return _section("calibration", "Calibration", _note("Scores are not probabilities."))
    series = [_cal_series(_FED_LABEL, cal)]
    if base is not None and base.get("calibration"):
        series.append(_cal_series(_BASE_LABEL, base["calibration"]))
    head = ["predicted probability", "rows", "mean predicted", "observed rate"]
    rows = [
        [f"<td>{b['lower']:.1f} – {b['upper']:.1f}</td>"]
        + [_num(b[k]) for k in ("rows", "mean_predicted", "observed_rate")]
        for b in cal["bins"]
    ]
    caption = f"Brier score {cal['brier']:.4f}; perfectly calibrated bins lie on the diagonal."
    img = _img("plot-calibration", "Calibration plot", plots.calibration_png(series), caption)
    return _section("calibration", "Calibration", img, _table("table-calibration", head, rows))


def _cal_series(label: str, cal: dict[str, Any]) -> dict[str, Any]:
    shown = [b for b in cal["bins"] if b["rows"] is not None]
    x = [b["mean_predicted"] for b in shown]
    return {"label": label, "x": x, "y": [b["observed_rate"] for b in shown]}


#: (key, column heading, digits or "%") of the lift table.
_LIFT_COLUMNS = [
    ("decile", "decile", 0), ("rows", "rows", 0), ("positives", "positives", 0),
    ("rate", "positive rate", "%"), ("lift", "lift", 2), ("cum_gain", "cumulative gain", "%"),
    ("cum_lift", "cumulative lift", 2), ("score_min", "min score", 4),
    ("score_max", "max score", 4),
]  # fmt: skip


def _lift_section(fed: dict[str, Any], base: dict[str, Any] | None) -> str:
    lift = fed.get("lift")
    heading = "Lift and gain by decile"
    if not lift:
        return _section("lift", heading, _withheld_plot("plot-gain", "lift table"))
    table = _table("table-lift", [c[1] for c in _LIFT_COLUMNS], _cells(lift, _LIFT_COLUMNS))
    series = [_gain_series(_FED_LABEL, lift)]
    if base is not None and base.get("lift"):
        series.append(_gain_series(_BASE_LABEL, base["lift"]))
    caption = "Share of all positives found when reviewing the top deciles by score."
    img = _img("plot-gain", "Cumulative gain chart", plots.gain_png(series), caption)
    return _section("lift", heading, table, img)


def _cells(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str, Any]]) -> list:
    """Table cells of ``rows`` for ``columns`` as (key, heading, digits or "%")."""
    return [
        [_num(r[k], 3, pct=True) if d == "%" else _num(r[k], d or 3) for k, _, d in columns]
        for r in rows
    ]


def _gain_series(label: str, lift: list[dict[str, Any]]) -> dict[str, Any]:
    shown = [r for r in lift if r["cum_gain"] is not None]
    x = [r["decile"] / len(lift) for r in shown]
    return {"label": label, "x": x, "y": [r["cum_gain"] for r in shown]}


_PR_COLUMNS = [
    ("threshold", "flag if score ≥", 2), ("flagged", "flagged", 0), ("tp", "TP", 0),
    ("fp", "FP", 0), ("fn", "FN", 0), ("tn", "TN", 0), ("precision", "precision", 3),
    ("recall", "recall", 3), ("f1", "F1", 3),
]  # fmt: skip


def _precision_recall_section(fed: dict[str, Any]) -> str:
    rows = _cells(fed.get("precision_recall") or [], _PR_COLUMNS)
    table = _table("table-precision-recall", [c[1] for c in _PR_COLUMNS], rows)
    return _section("precision-recall", "Precision and recall", table)


_IMPORTANCE_COLUMNS = [
    ("gain", "gain", 2), ("splits", "splits", 0), ("share", "share of all gain", "%"),
]  # fmt: skip


def _importance_section(importance: dict[str, list[dict[str, Any]]] | None) -> str:
    heading = "Feature importance"
    if not importance:
        return _section("importance", heading, _note("Not available for this model."))
    note = _note(
        "Feature names another party's policy does not release appear masked. Shares are "
        "of the total gain over all parties' features."
    )
    slugs = _unique_slugs(list(importance))
    parts = [_party_importance(p, rows, slugs[p]) for p, rows in importance.items()]
    return _section("importance", heading, note, *parts)


def _party_importance(party: str, rows: list[dict[str, Any]], slug: str) -> str:
    top = rows[:_TOP_FEATURES]
    png = plots.importance_png(party, [r["feature"] for r in top], [r["gain"] for r in top])
    share = sum(r["share"] for r in rows)
    caption = (
        f"Top {len(top)} of {len(rows)} features of {party} by total split gain; together "
        f"{party}'s features carry {100 * share:.1f}% of the gain of all parties."
    )
    cells = [
        [f"<td>{_e(r['feature'])}</td>", *c]
        for r, c in zip(rows, _cells(rows, _IMPORTANCE_COLUMNS), strict=True)
    ]
    head = ["feature"] + [c[1] for c in _IMPORTANCE_COLUMNS]
    alt = f"Feature importance: {party}"
    return (
        f"<h3>{_e(party)}</h3>"
        + _img(f"plot-importance-{slug}", alt, png, caption)
        + _table(f"table-importance-{slug}", head, cells)
    )


def _unique_slugs(names: list[str]) -> dict[str, str]:
    """An id-safe slug per party name; a numeric suffix keeps ids unique."""
    out: dict[str, str] = {}
    for name in names:
        base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "party"
        slug, k = base, 2
        while slug in out.values():
            slug, k = f"{base}-{k}", k + 1
        out[name] = slug
    return out


def _shap_importance(
    importance: Mapping[str, Sequence[tuple[str, float]]] | None,
) -> dict[str, list[dict[str, Any]]] | None:
    if not importance:
        return None
    return {
        party: [{"feature": str(f), "mean_abs": float(v)} for f, v in rows]
        for party, rows in importance.items()
    }


def _shap_section(importance: dict[str, list[dict[str, Any]]] | None) -> str:
    heading = "Contributions to the score (mean |SHAP|)"
    if not importance:
        return _section("shap", heading, _note("Not available for this model."))
    note = _note(
        "Mean absolute contribution of each feature to the margin (log-odds) over the test "
        "rows: exact TreeSHAP for tree models, the linear terms for logistic regression. A "
        "feature whose party does not release names appears as 'party feature k'; a party "
        "that releases no per-row values appears as its total."
    )
    slugs = _unique_slugs(list(importance))
    parts = []
    for party, rows in importance.items():
        top = rows[:_TOP_FEATURES]
        png = plots.importance_png(
            party,
            [r["feature"] for r in top],
            [r["mean_abs"] for r in top],
            xlabel="mean |contribution| to the log-odds",
            title="Mean |SHAP|",
        )
        cells = [[f"<td>{_e(r['feature'])}</td>", _value_cell(r["mean_abs"])] for r in rows]
        alt = f"Mean absolute SHAP: {party}"
        caption = f"Top {len(top)} of {len(rows)} of {party}'s columns by mean |SHAP|."
        parts.append(
            f"<h3>{_e(party)}</h3>"
            + _img(f"plot-shap-{slugs[party]}", alt, png, caption)
            + _table(f"table-shap-{slugs[party]}", ["feature", "mean |SHAP|"], cells)
        )
    return _section("shap", heading, note, *parts)


def _withheld_section(fed: dict[str, Any], base: dict[str, Any] | None) -> str:
    items = [f"{_FED_LABEL}: {w}" for w in fed.get("withheld", [])]
    items += [f"{_BASE_LABEL}: {w}" for w in (base or {}).get("withheld", [])]
    listing = "<ul>" + "".join(f"<li>{_e(i)}</li>" for i in items) + "</ul>"
    note = _note(
        f"A statistic resting on fewer than {fed['min_rows']} rows is not released (silo "
        "policy <code>min_rows_per_statistic</code>)."
    )
    return _section(
        "withheld",
        "Withheld statistics",
        note,
        listing if items else _note("Nothing was withheld."),
    )


# --- population stability (the ``stability`` step) ---------------------------------------------

#: one characteristic (or the score) of a stability report: name, index (None: withheld), band,
#: the training quantile edges and the per-bin row counts of both populations (missing bin last)
StabilityRow = dict[str, Any]


def write_stability_report(
    path_html: str | os.PathLike[str],
    path_json: str | os.PathLike[str],
    *,
    title: str,
    summary: Mapping[str, Any],
    rows: Sequence[StabilityRow],
    min_rows: int,
) -> tuple[Path, Path]:
    """Write a silo's population stability report (HTML and JSON, each atomically).

    The report stays at the silo: it shows its own characteristics in full (edges, counts);
    what the silo released is in the step's meta. Bands: stable below 0.10, watch below 0.25,
    shift above (``fedsilo.protocols.stability.index``).
    """
    doc = {
        "title": title,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "summary": _jsonable(dict(summary)),
        "min_rows": min_rows,
        "characteristics": _jsonable([dict(r) for r in rows]),
    }
    _write_atomic(Path(path_json), json.dumps(doc, indent=2, allow_nan=False) + "\n")
    _write_atomic(Path(path_html), _stability_html(doc))
    return Path(path_html), Path(path_json)


def _stability_html(doc: dict[str, Any]) -> str:
    head = ["characteristic", "population stability index", "band", "training rows", "batch rows"]
    overview = [
        [
            f"<td>{_e(r['name'])}</td>",
            _num(r.get("index"), 4),
            f"<td>{_e(r.get('band') or '—')}</td>",
            _num(r.get("expected_rows")),
            _num(r.get("actual_rows")),
        ]
        for r in doc["characteristics"]
    ]
    note = _note(
        "Population stability index = Σ (batch share − training share) · ln(batch share / "
        "training share) over bins cut at the training distribution's quantiles. Below 0.10: "
        "stable; 0.10–0.25: watch; above 0.25: significant shift."
    )
    parts = [
        f'<header><h1 id="report-title">{_e(doc["title"])}</h1>'
        f'<p class="meta">{_e("generated " + doc["generated_at"])}</p></header>',
        _model_section(doc["summary"]),
        _section(
            "stability", "Population stability", note, _table("table-stability", head, overview)
        ),
    ]
    for k, r in enumerate(doc["characteristics"]):
        parts.append(_stability_bins(k, r))
    return _PAGE.format(title=_e(doc["title"]), style=_STYLE, body="\n".join(parts))


def _stability_bins(k: int, row: dict[str, Any]) -> str:
    edges, exp, act = row.get("edges", []), row.get("expected", []), row.get("actual", [])
    n_e, n_a = max(sum(exp), 1), max(sum(act), 1)
    cells = []
    for i, (e, a) in enumerate(zip(exp, act, strict=True)):
        if i == len(exp) - 1:
            label = "missing"
        elif i < len(edges):
            label = f"≤ {edges[i]:g}"
        else:
            label = f"> {edges[-1]:g}" if edges else "all"
        cells.append(
            [
                f"<td>{_e(label)}</td>",
                _num(e),
                _num(a),
                _num(e / n_e, pct=True),
                _num(a / n_a, pct=True),
            ]
        )
    head = ["bin", "training rows", "batch rows", "training share", "batch share"]
    return f'<h3 id="stability-{k}">{_e(row["name"])}</h3>' + _table(
        f"table-stability-{k}", head, cells
    )


# --- fairness audit (fedsilo/protocols/fairness) ------------------------------------------------


def write_fairness_report(
    path_html: str | Path,
    path_json: str | Path,
    *,
    title: str,
    summary: Mapping[str, Any],
    audit: Mapping[str, Any],
) -> tuple[Path, Path]:
    """A fairness audit's report (HTML with its own section and plots, and JSON) from the
    released metrics of :func:`fedsilo.protocols.fairness.metrics.audit_metrics`: it shows
    nothing the label holder does not release."""
    doc = {
        "title": title,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model_summary": _jsonable(dict(summary)),
        "fairness": _jsonable(dict(audit)),
    }
    _write_atomic(Path(path_json), json.dumps(doc, indent=2, allow_nan=False) + "\n")
    body = [
        f'<header><h1 id="report-title">{_e(title)}</h1><p class="meta">'
        f"{_e('generated ' + doc['generated_at'])} · statistics over fewer than "
        f"{_e(audit['min_rows'])} rows are withheld (—)</p></header>",
        _model_section(doc["model_summary"]),
        _fairness_section(doc["fairness"]),
    ]
    page = _PAGE.format(title=_e(title), style=_STYLE, body="\n".join(body))
    _write_atomic(Path(path_html), page)
    return Path(path_html), Path(path_json)


def _fairness_section(audit: dict[str, Any]) -> str:
    parts = [
        _note(
            "Protected groups are held by another silo; these are group-level counts it "
            "released under its own minimum per group. A row is selected when its score is at "
            "least the threshold."
        )
    ]
    for name, gaps in audit["gaps"].items():
        groups = [g for g in audit["groups"] if g["grouping"] == name]
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        parts.append(f"<h3>{_e(name)}</h3>")
        head = ["group", "rows", "base rate", "AUC"]
        for t in audit["thresholds"]:
            head += [f"selection @{t:g}", f"TPR @{t:g}", f"FPR @{t:g}", f"precision @{t:g}"]
        rows = []
        for g in groups:
            cells = [f"<td>{_e(g['group'])}</td>", _num(g["rows"]), _num(g["base_rate"], 4)]
            cells.append(_num(g["auc"], 4))
            for at in g["thresholds"]:
                cells += [_num(at[k], 4) for k in ("selection_rate", "tpr", "fpr", "precision")]
            rows.append(cells)
        parts.append(_table(f"table-fairness-{slug}", head, rows))
        gap_rows = [
            [
                f"<td>{t['threshold']:g}</td>",
                _num(t["demographic_parity_difference"], 4),
                _num(t["demographic_parity_ratio"], 4),
                _num(t["equalized_odds_difference"], 4),
                _num(gaps["auc_gap"], 4),
            ]
            for t in gaps["thresholds"]
        ]
        parts.append(
            _table(
                f"table-fairness-gaps-{slug}",
                [
                    "threshold",
                    "demographic parity difference",
                    "ratio",
                    "equalized odds diff.",
                    "AUC gap",
                ],
                gap_rows,
            )
        )
        labels = [g["group"] for g in groups]
        first = audit["thresholds"][0] if audit["thresholds"] else None
        if first is not None:
            bars = {
                f"selection @{first:g}": [g["thresholds"][0]["selection_rate"] for g in groups],
                "TPR": [g["thresholds"][0]["tpr"] for g in groups],
                "FPR": [g["thresholds"][0]["fpr"] for g in groups],
                "AUC": [g["auc"] for g in groups],
            }
            png = plots.group_bars_png(f"{name}: rates by group", labels, bars)
            parts.append(
                _img(
                    f"plot-fairness-{slug}", f"rates by group of {name}", png, "withheld: left out"
                )
            )
        series = [
            {
                "label": g["group"],
                "x": [b["mean_score"] for b in g["calibration"] if b["observed_rate"] is not None],
                "y": [
                    b["observed_rate"] for b in g["calibration"] if b["observed_rate"] is not None
                ],
            }
            for g in groups
        ]
        png = plots.group_calibration_png(f"{name}: calibration by score band", series)
        parts.append(
            _img(f"plot-fairness-calibration-{slug}", f"calibration of {name}", png, "per band")
        )
    return _section("fairness", "Fairness audit", *parts)


def _scorecard_section(card: dict[str, Any]) -> str:
    """The points of every bin of the characteristics this silo holds; the others' stay with
    their owners (``docs/scorecard.md``)."""
    scale = card.get("scale", {})
    held = ", ".join(str(p) for p in card.get("held_elsewhere", [])) or "none"
    note = _note(
        _e(
            "Score = base points + the points of each characteristic's bin: "
            f"{_plain(scale.get('base_score'))} points at odds {_plain(scale.get('base_odds'))}:1, "
            f"{_plain(scale.get('pdo'))} points to double the odds; base points "
            f"{_plain(card.get('base_points'))}. The characteristics of other silos stay with "
            f"their owners ({held})."
        )
    )
    parts = [note]
    for i, char in enumerate(card.get("characteristics", [])):
        rows = [
            [f"<td>{_e(b['bin'])}</td>", _num(b["woe"], 3), _num(b["points"], 1)]
            for b in char["bins"]
        ]
        parts.append(f"<h3>{_e(char['name'])}</h3>")
        parts.append(_table(f"table-scorecard-{i}", ["bin", "WOE", "points"], rows))
    return _section("scorecard", "Scorecard", *parts)


def _plain(value: Any) -> str:
    return f"{float(value):.1f}" if isinstance(value, int | float) else "—"
