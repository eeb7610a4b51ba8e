"""SecureBoost against XGBoost on default credit, from one run on this machine.

    python bench/bench_secureboost.py                 # 30 trees, 2048-bit keys, + 30k/120k scaling
    python bench/bench_secureboost.py --scale-trees 0 # skip the scaling rows

Prints: federated training wall time beside ``xgboost`` (hist, same parameters, same training
rows in the same order) and the ratio; a per-tree breakdown (label-holder encryption on the
critical path, passive histogram time, label-holder decryption, bytes that would be relayed);
test AUC of both; CPU seconds of every process (this machine is shared: CPU time says what the
protocol costs, wall time what it took here); peak memory; time per tree at 30k and 120k rows
(120k = the data replicated 4x with jitter on continuous columns).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from fedsilo import parallel
from fedsilo.crypto.paillier import generate_keypair
from fedsilo.protocols.secureboost.active import (
    ActiveParty,
    PassiveParty,
    SecureBoostParams,
    predict_in_process,
    run_in_process,
)

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"  # bundled: tests/data/README.md


def load() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    guest = np.loadtxt(DATA / "default_credit_hetero_guest.csv.gz", delimiter=",", skiprows=1)
    host = np.loadtxt(DATA / "default_credit_hetero_host.csv.gz", delimiter=",", skiprows=1)
    return guest[:, 1], guest[:, 2:], host[:, 1:]


def replicate(y: np.ndarray, g: np.ndarray, h: np.ndarray, times: int, seed: int = 0):
    """``times`` copies; columns with many distinct values get a little Gaussian jitter."""
    rng = np.random.default_rng(seed)

    def jitter(x: np.ndarray) -> np.ndarray:
        out = np.vstack([x] * times)
        cont = [f for f in range(x.shape[1]) if len(np.unique(x[:, f])) > 50]
        out[len(x) :, cont] += rng.normal(0, 0.01, size=(len(out) - len(x), len(cont)))
        return out

    return np.tile(y, times), jitter(g), jitter(h)


def proc_stat(pid: int) -> tuple[float, int]:
    """(CPU seconds, peak RSS bytes) of a live process, from /proc."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    peak = 0
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) * 1024
    return cpu, peak


def all_procs() -> tuple[float, int, list[int]]:
    """CPU seconds, summed peak RSS and per-process peak RSS of this process and the workers."""
    pids = [os.getpid(), *getattr(parallel.pool(), "_processes", {}).keys()]
    stats = [proc_stat(p) for p in pids]
    return sum(c for c, _ in stats), sum(m for _, m in stats), [m for _, m in stats]


def train(params, y, g, h, train_rows, valid_rows, keypair):
    active = ActiveParty(
        "guest",
        g,
        y,
        params=params,
        passives=["host"],
        valid_rows=valid_rows,
        train_rows=train_rows,
        keypair=keypair,
    )
    passive = PassiveParty("host", h)
    start = time.perf_counter()
    stats = run_in_process(active, {"host": passive})
    return active, passive, stats, time.perf_counter() - start


def per_tree_rows(active, passive, stats) -> list[tuple]:
    rows = []
    for t, s in enumerate(active.tree_stats):
        hist = passive.stats.get(t, {}).get("hist_s", 0.0)
        rows.append((t, s.encrypt_s, hist, s.decrypt_s, s.local_s, stats.bytes_per_tree.get(t, 0)))
    return rows


def main() -> None:
    # imported here, not at module level: spawned pool workers re-import this module and would
    # otherwise each carry xgboost and scikit-learn in memory
    import xgboost as xgb
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    ap = argparse.ArgumentParser()
    ap.add_argument("--trees", type=int, default=30)
    ap.add_argument("--key-bits", type=int, default=2048)
    ap.add_argument("--scale-trees", type=int, default=3, help="trees per scaling run (0: skip)")
    args = ap.parse_args()

    y, g, h = load()
    train_rows, test_rows = train_test_split(
        np.arange(len(y)), test_size=0.2, stratify=y, random_state=42
    )
    params = SecureBoostParams(
        n_estimators=args.trees,
        max_depth=3,
        learning_rate=0.3,
        max_bin=32,
        reg_lambda=1.0,
        key_bits=args.key_bits,
    )
    print(
        f"machine: {os.cpu_count()} cores, pool workers {parallel.workers()}, "
        f"load average at start {os.getloadavg()[0]:.2f}"
    )

    # XGBoost on the joined table, same training rows in the same order (its sketch depends on it)
    x_joined = np.hstack([g, h])
    start = time.perf_counter()
    bst = xgb.train(
        {
            "objective": "binary:logistic",
            "tree_method": "hist",
            "max_depth": 3,
            "eta": 0.3,
            "max_bin": 32,
            "reg_lambda": 1.0,
        },
        xgb.DMatrix(x_joined[train_rows], label=y[train_rows]),
        args.trees,
    )
    xgb_s = time.perf_counter() - start
    xgb_auc = roc_auc_score(y[test_rows], bst.predict(xgb.DMatrix(x_joined[test_rows])))

    start = time.perf_counter()
    keypair = generate_keypair(args.key_bits)
    keygen_s = time.perf_counter() - start
    parallel.pool()  # start the workers before timing, as a silo's long-lived pool would be
    cpu0, _, _ = all_procs()
    active, passive, stats, fed_s = train(params, y, g, h, train_rows, test_rows, keypair)
    cpu1, peak, peaks = all_procs()
    scores = predict_in_process(
        active.model, g[test_rows], {"host": (passive.splits, h[test_rows])}
    )
    fed_auc = roc_auc_score(y[test_rows], scores)

    print(
        f"\nfederated SecureBoost, {len(train_rows)} training rows, {args.trees} trees, depth 3, "
        f"32 bins, {args.key_bits}-bit Paillier (key generation {keygen_s:.1f} s, not counted)"
    )
    print(f"{'':24}{'wall s':>10}{'test AUC':>10}")
    print(f"{'xgboost (hist)':24}{xgb_s:>10.2f}{xgb_auc:>10.4f}")
    print(f"{'fedsilo SecureBoost':24}{fed_s:>10.2f}{fed_auc:>10.4f}")
    per_proc = " + ".join(f"{p / 2**20:.0f}" for p in peaks)
    print(
        f"ratio {fed_s / xgb_s:.0f}x; |AUC difference| {abs(fed_auc - xgb_auc):.4f}; "
        f"CPU seconds of all processes {cpu1 - cpu0:.1f}; peak RSS {peak / 2**20:.0f} MiB "
        f"(main + workers: {per_proc}); relayed {stats.bytes_total / 2**20:.0f} MiB in "
        f"{stats.messages} messages"
    )

    print(
        "\nper tree (s): encrypt = label holder's critical path (obfuscators are precomputed "
        "during the previous tree), hist = passive party, decrypt = label holder, local = "
        "own histograms + split finding"
    )
    print(f"{'tree':>5}{'encrypt':>10}{'hist':>10}{'decrypt':>10}{'local':>10}{'MiB':>10}")
    for t, e, hs, d, loc, b in per_tree_rows(active, passive, stats):
        print(f"{t:>5}{e:>10.3f}{hs:>10.3f}{d:>10.3f}{loc:>10.3f}{b / 2**20:>10.1f}")

    if args.scale_trees:
        print(f"\nscaling: seconds per tree (mean of {args.scale_trees} trees)")
        print(f"{'rows':>8}{'train rows':>12}{'s/tree':>10}{'CPU s/tree':>12}")
        sp = SecureBoostParams(**{**params.to_dict(), "n_estimators": args.scale_trees})
        for times in (1, 4):
            ry, rg, rh = replicate(y, g, h, times)
            tr = np.concatenate([train_rows + k * len(y) for k in range(times)])
            c0, _, _ = all_procs()
            _, _, _, s = train(sp, ry, rg, rh, tr, None, keypair)
            c1, _, _ = all_procs()
            print(
                f"{len(ry):>8}{len(tr):>12}{s / args.scale_trees:>10.2f}"
                f"{(c1 - c0) / args.scale_trees:>12.2f}"
            )
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
