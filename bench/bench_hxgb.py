"""Horizontal federated XGBoost against XGBoost on the pooled rows, from one run on this machine.

    python bench/bench_hxgb.py                  # 30 trees of depth 3, max_bin 32, three silos
    python bench/bench_hxgb.py --trees 100 --depth 6 --max-bin 256

Data: ``default_credit_homo_guest/host_1/host_2`` (8,000 rows each, 23 features) as the three
silos, tested on ``default_credit_homo_test`` (6,000 rows). Also runs a non-identical split:
the pooled rows cut into three silos by terciles of LIMIT_BAL (x13), so each silo's feature and
label distributions differ.

Prints: wall time of fedsilo (every silo, the aggregator and the CKKS work in this one process,
one after the other: a deployment runs the silos concurrently, so its critical path is about
``silo s / silos + aggregator s`` plus network time) beside ``xgboost`` (hist, same parameters,
pooled rows); CPU seconds of this process; secure-sum rounds; bytes the relay carries (every
encoded update to the coordinator, every sum back to each silo, the keys; sealing adds 40 bytes
per message); test AUC of both.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import xgboost as xgb
from sklearn.metrics import roc_auc_score

from fedsilo.ml.hxgb import HxgbParams, HxgbSilo, train_in_process

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
Part = tuple[np.ndarray, np.ndarray]


def load(name: str) -> Part:
    a = np.loadtxt(DATA / name, delimiter=",", skiprows=1)
    return a[:, 2:], a[:, 1]


def skewed(parts: list[Part], feature: int = 13) -> list[Part]:
    """The pooled rows cut into three silos by terciles of one feature."""
    x = np.vstack([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    order = np.argsort(x[:, feature], kind="stable")
    return [(x[i], y[i]) for i in np.array_split(order, 3)]


def run_xgboost(parts: list[Part], test: Part, params: HxgbParams) -> tuple[float, float]:
    x = np.vstack([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    p = {
        "objective": "binary:logistic",
        "tree_method": "hist",
        "max_depth": params.max_depth,
        "eta": params.learning_rate,
        "max_bin": params.max_bin,
        "reg_lambda": params.reg_lambda,
        "seed": params.seed,
    }
    start = time.perf_counter()
    bst = xgb.train(p, xgb.DMatrix(x, label=y), params.n_estimators)
    wall = time.perf_counter() - start
    return wall, float(roc_auc_score(test[1], bst.predict(xgb.DMatrix(test[0]))))


def run_fedsilo(parts: list[Part], test: Part, params: HxgbParams) -> dict[str, float]:
    cpu, start = time.process_time(), time.perf_counter()
    silos = [
        HxgbSilo(x, y, params=params, party=f"silo{i}", n_silos=len(parts))
        for i, (x, y) in enumerate(parts)
    ]
    model, stats = train_in_process(silos)
    wall = time.perf_counter() - start
    auc = float(roc_auc_score(test[1], model.predict_proba(test[0])))
    return {
        "wall": wall,
        "cpu": time.process_time() - cpu,
        "auc": auc,
        "rounds": stats.rounds,
        "mib": stats.bytes_relayed / 2**20,
        "silo": stats.silo_seconds,
        "agg": stats.aggregator_seconds,
        "trees": len(model.trees),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trees", type=int, default=30)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--max-bin", type=int, default=32)
    ap.add_argument("--eta", type=float, default=0.3)
    args = ap.parse_args()
    params = HxgbParams(
        n_estimators=args.trees,
        max_depth=args.depth,
        max_bin=args.max_bin,
        learning_rate=args.eta,
        reg_lambda=1.0,
    )
    parts = [load(f"default_credit_homo_{n}.csv") for n in ("guest", "host_1", "host_2")]
    test = load("default_credit_homo_test.csv")
    print(
        f"horizontal XGBoost, {args.trees} trees of depth {args.depth}, max_bin {args.max_bin}, "
        f"eta {args.eta}, 3 silos x 8,000 rows, 23 features; test 6,000 rows; "
        f"{os.cpu_count()} cores"
    )
    head = f"{'split':10}{'':22}{'wall s':>8}{'CPU s':>8}{'rounds':>8}{'MiB':>9}{'AUC':>9}"
    print(head + f"{'silo s':>9}{'agg s':>8}")
    for name, data in (("given", parts), ("by x13", skewed(parts))):
        xgb_wall, xgb_auc = run_xgboost(data, test, params)
        fed = run_fedsilo(data, test, params)
        print(
            f"{name:10}{'xgboost (hist, pooled)':22}{xgb_wall:>8.2f}{'':>8}{'':>8}{'':>9}"
            f"{xgb_auc:>9.4f}"
        )
        print(
            f"{'':10}{'fedsilo hxgb':22}{fed['wall']:>8.2f}{fed['cpu']:>8.2f}"
            f"{fed['rounds']:>8.0f}{fed['mib']:>9.1f}{fed['auc']:>9.4f}{fed['silo']:>9.2f}"
            f"{fed['agg']:>8.2f}"
        )
        print(f"{'':10}{'AUC difference':22}{'':>48}{fed['auc'] - xgb_auc:>+9.4f}")
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
