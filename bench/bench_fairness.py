"""Fairness audit of 25,000 rows with two protected attributes, 2048-bit keys (target <= 10 s).

    python bench/bench_fairness.py                 # 25,000 rows, SEX and 6 AGE bands
    python bench/bench_fairness.py --rows 5000 --bits 1024

Data: the first ``--rows`` rows of the bundled UCI credit-card default data (30,000 rows); the
attribute holder holds SEX and AGE (bands < 25, [25, 35), ..., >= 65), the label holder the
default label and a model's scores (a logistic regression on the PAY_* columns, fitted on the
other rows; not timed). Timed: the whole audit in one process, both parties' keys included, every
message through the wire codec (``fedsilo.protocols.fairness.local.run_audit``), with the silo's
process pool already running (a silo keeps it for its life); per phase, and the bytes the
coordinator would relay. Beside it: the same metrics on the pooled data with fairlearn's
``MetricFrame`` (selection rate, TPR and FPR at each threshold, AUC per group), which needs
every row in one place.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from fedsilo import parallel
from fedsilo.ml.relay import Relay
from fedsilo.protocols.fairness.audit import AttributeHolder, AuditSettings, LabelHolder
from fedsilo.protocols.fairness.groups import groupings, plan_groups
from fedsilo.protocols.fairness.local import run_audit

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "UCI_Credit_Card.csv.gz"
TARGET_S = 10.0
AGE_EDGES = [25.0, 35.0, 45.0, 55.0, 65.0]
THRESHOLDS = (0.3, 0.5)


def _data(rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    d = np.loadtxt(DATA, delimiter=",", skiprows=1)
    if rows > len(d) - 1000:
        raise SystemExit(f"--rows must be at most {len(d) - 1000}")
    pay = d[:, 6:12]
    model = LogisticRegression(max_iter=500).fit(pay[rows:], d[rows:, 24])
    return model.predict_proba(pay[:rows])[:, 1], d[:rows, 24], d[:rows, 2], d[:rows, 5]


def _fairlearn(scores: np.ndarray, y: np.ndarray, sex: np.ndarray, age: np.ndarray) -> float:
    from fairlearn.metrics import (
        MetricFrame,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )

    start = time.perf_counter()
    band = np.searchsorted(AGE_EDGES, age, side="right")
    for sf in (sex, band):
        for t in THRESHOLDS:
            MetricFrame(
                metrics={"s": selection_rate, "t": true_positive_rate, "f": false_positive_rate},
                y_true=y,
                y_pred=(scores >= t).astype(int),
                sensitive_features=sf,
            )
        MetricFrame(metrics=roc_auc_score, y_true=y, y_pred=scores, sensitive_features=sf)
    return time.perf_counter() - start


def _cpu() -> float:
    """CPU seconds of this process and of the pool's workers (Linux ``/proc``)."""
    total = time.process_time()
    tick = os.sysconf("SC_CLK_TCK")
    for pid in list(getattr(parallel.pool(), "_processes", {}) or {}):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=25_000)
    ap.add_argument("--bits", type=int, default=2048)
    ap.add_argument("--bins", type=int, default=128)
    args = ap.parse_args()
    scores, y, sex, age = _data(args.rows)
    parallel.pool().submit(int, 0).result()  # the silo's pool is up before any job
    insecure = args.bits if args.bits < 2048 else None
    audit = AuditSettings(
        thresholds=THRESHOLDS, bins=args.bins, key_bits=args.bits, insecure_min_key_bits=insecure
    )
    relay = Relay()
    start = time.perf_counter()
    cpu = _cpu()
    plan = plan_groups(
        {"SEX": sex, "AGE": age}, groupings(["SEX", "AGE"], []), {"AGE": AGE_EDGES}, 10
    )
    holder = AttributeHolder("bureau", plan, audit)
    label = LabelHolder("bank", scores, y, audit)
    out = run_audit(holder, label, 10, relay)
    wall = time.perf_counter() - start
    cpu = _cpu() - cpu
    reference = _fairlearn(scores, y, sex, age)
    print(f"fairness audit: {args.rows:,} rows, {len(plan.slots)} groups (SEX, AGE bands), ")
    print(f"  {args.bits}-bit keys, {label.bins} score bins, thresholds {list(THRESHOLDS)}")
    print("| | seconds | note |")
    print("|---|---:|---|")
    print(
        f"| fedsilo fairness audit | {wall:.2f} | both parties in one process and its pool: "
        f"{cpu:.2f} CPU s; {relay.bytes_relayed / 2**20:.1f} MiB relayed |"
    )
    print(f"| fairlearn MetricFrame, pooled | {reference:.3f} | every row in one place |")
    verdict = "meets" if wall <= TARGET_S else "misses"
    print(f"{verdict} the target of {TARGET_S:.0f} s")
    worst = max(
        abs(g["auc"] - roc_auc_score(y[m], scores[m]))
        for g in out["groups"]
        if g["auc"] is not None
        for m in [_mask(g["group"], sex, age)]
    )
    print(f"largest |AUC - pooled AUC| over the groups: {worst:.2e}")


def _mask(label: str, sex: np.ndarray, age: np.ndarray) -> np.ndarray:
    if label.startswith("SEX="):
        return sex == float(label.split("=")[1])
    band = np.searchsorted(AGE_EDGES, age, side="right")
    if label.startswith("AGE <"):
        return band == 0
    if label.startswith("AGE >="):
        return band == len(AGE_EDGES)
    low = float(label.split("[")[1].split(",")[0])
    return band == AGE_EDGES.index(low) + 1


if __name__ == "__main__":
    sys.exit(main())
