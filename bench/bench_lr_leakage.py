"""What a curious passive silo learns about labels from vertical LR gradients, on the demo data.

    python bench/bench_lr_leakage.py [--seeds 20] [--batches 11]

Data: the bundled demo (``fedsilo/data/demo_*.csv.gz``): ``bank`` holds the labels and PAY_*,
``bureau`` and ``lender`` are passive. Rows are the three silos' shared ids in id order (PSI's
alignment), split as the demo's ``split`` step does (test 0.2, seed 42); training rows only. Each
silo standardises its own columns, as the protocol does.

Training is simulated in the clear with the protocol's update rule
(``fedsilo.protocols.lr.vertical`` without the encryption, which changes nothing a passive silo sees
but rounding), from the label holder's secret start
(:func:`fedsilo.protocols.lr.vertical.initial_weights`, "secret start") and from all-zero weights
(the code before issue 12 item 7, "zero start"). One run per job seed (``LRConfig.seed``: which rows
form each batch, and the secret start); ``--seeds`` runs.

What the passive silo sees per batch is ``v = X_p^T r`` (times ``1/B``), ``r = sigmoid(z) - y``.
Its attacks, both using ``sigmoid(z) ~ m`` (``m = 0.5`` in the first batch, the known base rate
after):

* label sums: ``S_hat = X_p^T m - v`` estimates ``S = X_p^T y``; error in units of the spread of
  ``S`` under the base rate (``sqrt(p(1-p) sum x^2)`` per feature): 0 means exact, ~1 means the
  gradient told it no more than the base rate.
* row labels: the Gaussian posterior of each row's label given ``S_hat``,
  ``x_i^T (X^T X)^-1 (S_hat - p X^T 1) / (p(1-p)) - (1/2 - p) h_i / (p(1-p))`` with leverage
  ``h_i``; AUC over all rows, over the top 1% and top 0.1% leverage rows of each batch ("stand
  out"), and the accuracy of its confident calls (posterior > 0.9) with how many it makes.
"""

from __future__ import annotations

import argparse
import gzip
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score

from fedsilo.ml.lr_common import LRConfig, Standardizer, epoch_batches, learning_rate, sigmoid
from fedsilo.protocols.lr.vertical import initial_weights
from fedsilo.protocols.split.stratify import stratified_positions
from fedsilo.silo_node.demo_data import DEMO_DATA_DIR, DEMO_PARTIES

FloatArray = np.ndarray


@dataclass
class Demo:
    x0: FloatArray  # label holder's standardised features with the ones column
    y: FloatArray
    passives: dict[str, FloatArray]  # standardised


def _read(party: str) -> dict[str, list[str]]:
    with gzip.open(DEMO_DATA_DIR / f"demo_{party}.csv.gz", "rt") as fh:
        header = fh.readline().strip().split(",")
        rows = [line.strip().split(",") for line in fh]
    return {name: [r[i] for r in rows] for i, name in enumerate(header)}


def load_demo() -> Demo:
    """The demo's training rows, aligned and standardised per silo."""
    tables = {p: _read(p) for p in DEMO_PARTIES}
    index = {p: {cid: i for i, cid in enumerate(t["customer_id"])} for p, t in tables.items()}
    shared = sorted(set.intersection(*(set(ix) for ix in index.values())))
    cols = {}
    for party, (_table, label, features) in DEMO_PARTIES.items():
        pos = [index[party][cid] for cid in shared]
        cols[party] = np.array([[float(tables[party][f][i]) for f in features] for i in pos])
        if label is not None:
            y = np.array([float(tables[party][label][i]) for i in pos])
    train = stratified_positions(y, test_fraction=0.2, valid_fraction=0.0, seed=42)["train"]
    std = {p: Standardizer.fit(c[train]).transform(c[train]) for p, c in cols.items()}
    x0 = np.hstack([std.pop("bank"), np.ones((train.size, 1))])
    return Demo(x0=x0, y=y[train], passives=std)


def gradients(demo: Demo, config: LRConfig, secret_start: bool, batches: int):
    """Yield ``(rows, {passive: v})`` for the first ``batches`` batches of epoch 0."""
    w0 = (
        initial_weights(demo.x0, demo.y, config.seed)
        if secret_start
        else np.zeros(demo.x0.shape[1])
    )
    wp = {p: np.zeros(x.shape[1]) for p, x in demo.passives.items()}
    step = learning_rate(config, 0)
    for rows in epoch_batches(demo.y.size, config.batch_size, 0, config.seed)[:batches]:
        z = demo.x0[rows] @ w0 + sum(x[rows] @ wp[p] for p, x in demo.passives.items())
        rho = (sigmoid(z) - demo.y[rows]) / rows.size
        seen = {p: x[rows].T @ rho for p, x in demo.passives.items()}
        g0 = demo.x0[rows].T @ rho
        g0[:-1] += config.l2 * w0[:-1]
        w0 = w0 - step * g0
        for p in wp:
            wp[p] = wp[p] - step * (seen[p] + config.l2 * wp[p])
        yield rows, {p: v * rows.size for p, v in seen.items()}


def sum_error(x: FloatArray, y: FloatArray, v: FloatArray, m: float, p: float) -> FloatArray:
    """Per feature: |S_hat - S| over the spread of S under the base rate."""
    s_hat = x.sum(axis=0) * m - v
    return np.asarray(np.abs(s_hat - x.T @ y) / np.sqrt(p * (1 - p) * (x * x).sum(axis=0)))


def row_scores(x: FloatArray, v: FloatArray, m: float, p: float) -> tuple[FloatArray, FloatArray]:
    """Per row: log posterior odds of ``y = 1`` given the gradient, and the row's leverage."""
    s_hat = x.sum(axis=0) * m - v
    gram_inv = np.linalg.pinv(x.T @ x)
    proj = x @ gram_inv
    lev = np.einsum("ij,ij->i", proj, x)
    llr = (proj @ (s_hat - p * x.sum(axis=0)) - (0.5 - p) * lev) / (p * (1 - p))
    return np.asarray(llr + np.log(p / (1 - p))), np.asarray(lev)


def _auc(y: FloatArray, s: FloatArray) -> float:
    return float(roc_auc_score(y, s)) if 0 < y.sum() < y.size else float("nan")


def attack(demo: Demo, party: str, secret_start: bool, seeds: int, batches: int) -> dict:
    """Run the attacks on the first ``batches`` batches of each seed's epoch 0."""
    p = float(demo.y.mean())
    out: dict[str, list] = {k: [] for k in ("err", "all", "top", "out", "later")}
    for seed in range(seeds):
        config = LRConfig(seed=seed)
        for b, (rows, seen) in enumerate(gradients(demo, config, secret_start, batches)):
            x, y = demo.passives[party][rows], demo.y[rows]
            m = 0.5 if b == 0 else p
            llr, lev = row_scores(x, seen[party], m, p)
            top = np.argsort(-lev)[: max(1, rows.size // 200)]
            if b > 0:
                out["later"].append((y[top], llr[top]))
                continue
            out["err"].append(sum_error(x, y, seen[party], m, p))
            out["all"].append((y, llr))
            out["top"].append((y[top], llr[top]))
            out["out"].append(_outside(demo, party, rows, seen[party], m, p))
    return out


def _outside(demo: Demo, party: str, rows: FloatArray, v: FloatArray, m: float, p: float):
    """The same score on rows not in the batch: what the gradient teaches as a model."""
    x = demo.passives[party]
    rest = np.setdiff1d(np.arange(demo.y.size), rows)
    beta = np.linalg.pinv(x[rows].T @ x[rows]) @ (x[rows].sum(axis=0) * (m - p) - v)
    return demo.y[rest], x[rest] @ beta


def _joined(pairs: list) -> tuple[FloatArray, FloatArray]:
    ys, ss = zip(*pairs, strict=True)
    return np.concatenate(ys), np.concatenate(ss)


def _report(label: str, out: dict) -> None:
    y, s = _joined(out["all"])
    sure = np.abs(s) > np.log(9)
    acc = float(np.mean((s[sure] > 0) == (y[sure] == 1))) if sure.any() else float("nan")
    err = np.concatenate(out["err"])
    later = _auc(*_joined(out["later"])) if out["later"] else float("nan")
    outside = _auc(*_joined(out["out"]))
    print(
        f"{label:<22} {np.median(err):>7.3f} {_auc(y, s):>7.3f} {outside:>7.3f}"
        f" {_auc(*_joined(out['top'])):>7.3f} {sure.mean() * 100:>6.2f}% {acc:>7.3f}"
        f" {later:>7.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20, help="job seeds (first batches) to try")
    parser.add_argument("--batches", type=int, default=11, help="batches of epoch 0 to attack")
    args = parser.parse_args()
    demo = load_demo()
    print(
        f"demo training rows {demo.y.size}, positives {demo.y.mean():.4f}, batch "
        f"{LRConfig().batch_size} rows, {args.seeds} job seeds"
    )
    print(
        f"{'passive, start':<22} {'sum err':>7} {'AUC in':>7} {'AUC out':>7} {'top .5%':>7} "
        f"{'sure':>7} {'sure ok':>7} {'later':>7}"
    )
    for party in demo.passives:
        for secret in (False, True):
            out = attack(demo, party, secret, args.seeds, args.batches)
            _report(f"{party}, {'secret' if secret else 'zero'} start", out)


if __name__ == "__main__":
    main()
