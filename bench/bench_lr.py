"""Federated LR benchmark: both forms to convergence beside scikit-learn on the pooled data.

    python bench/bench_lr.py [--key-bits 2048] [--skip-three] [--primitives]

Data: default credit. Vertical on ``default_credit_hetero_{guest,host}`` (stratified 80/20 split,
seed 42; label holder 13 features, host 10, or the host's split 5 + 5 over two passive silos);
horizontal on ``default_credit_homo_{guest,host_1,host_2}`` tested on ``..._homo_test``.
All parties run in this process (``fedsilo.protocols.lr.local``, ``fedsilo.protocols.hlr.local``),
every message encoded and decoded as on the wire; the shared process pool is warmed first (a silo
node's pool is long-lived).

Columns. ``wall s`` is training wall time to convergence (key generation and standardisation
included; scoring the test set excluded). ``cpu s`` is the CPU time this process and the pool's
workers spent on it: the machine is shared, so ``wall s`` moves with other people's load while
``cpu s`` does not (on two idle cores, wall is about cpu / 2 for the vertical runs).
``B/epoch`` is every byte the coordinator would relay per epoch (vertical) or round (horizontal),
averaged over the run, setup included (sealing adds 40 bytes per message). scikit-learn is
``LogisticRegression(C = 1/(l2·N))`` (lbfgs) on the pooled, standardised data, single process.

``--primitives`` times the step the issue asks to compare, an encrypted residual vector times a
plaintext feature matrix (4096 rows x 10 features), in Paillier (this implementation) and CKKS
(TenSEAL, the settings' 128-bit parameters), plus encrypting the 4096 residuals.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from fedsilo import parallel, settings
from fedsilo.crypto import paillier
from fedsilo.ml.lr_common import LRConfig, Standardizer, sklearn_c
from fedsilo.ml.relay import Relay
from fedsilo.ml.secure_hist import ObfuscatorStock
from fedsilo.protocols.hlr.horizontal import HLRConfig, HorizontalSilo
from fedsilo.protocols.hlr.local import run_horizontal
from fedsilo.protocols.lr import paillier as he
from fedsilo.protocols.lr.local import run_vertical
from fedsilo.protocols.lr.vertical import LabelHolder, PassiveParty

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"  # bundled: tests/data/README.md


def _cpu_seconds() -> float:
    """CPU time of this process plus the live pool workers (from /proc: workers never exit)."""
    total = time.process_time()
    ticks = os.sysconf("SC_CLK_TCK")
    for pid in list(getattr(parallel.pool(), "_processes", {}) or {}):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def _csv(name: str) -> np.ndarray:
    return np.loadtxt(DATA / f"{name}.gz", delimiter=",", skiprows=1)


def _sklearn(
    x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, y_te: np.ndarray, l2: float
) -> tuple[float, float]:
    start = time.perf_counter()
    std = Standardizer.fit(x_tr)
    est = LogisticRegression(C=sklearn_c(l2, y_tr.size), max_iter=2000)
    est.fit(std.transform(x_tr), y_tr)
    wall = time.perf_counter() - start
    return wall, float(roc_auc_score(y_te, est.decision_function(std.transform(x_te))))


def _row(
    name: str, wall: float, cpu: float, steps: int | str, per_step: int | str, auc: float
) -> None:
    per = f"{per_step:>12,}" if isinstance(per_step, int) else f"{per_step:>12}"
    print(f"{name:<40} {wall:>7.2f} {cpu:>7.2f} {steps!s:>7} {per} {auc:>8.4f}")


def bench_vertical(key_bits: int, splits: list[np.ndarray]) -> None:
    guest, host = _csv("default_credit_hetero_guest.csv"), _csv("default_credit_hetero_host.csv")
    y, xg, xh = guest[:, 1], guest[:, 2:], host[:, 1:]
    tr, te = train_test_split(np.arange(y.size), test_size=0.2, stratify=y, random_state=42)
    config = LRConfig(l2=1.0 / tr.size)
    names = [f"host{i}" for i in range(len(splits))]
    start, cpu = time.perf_counter(), _cpu_seconds()
    holder = LabelHolder(
        xg[tr],
        y[tr],
        feature_names=[f"g{i}" for i in range(xg.shape[1])],
        config=config,
        passive_parties=names,
        key_bits=key_bits,
        insecure_min_key_bits=min(key_bits, settings.PAILLIER_MIN_SECURE_BITS),
    )
    passives = [
        PassiveParty(
            xh[tr][:, c],
            party=n,
            feature_names=[f"h{i}" for i in c],
            config=config,
            passive_parties=names,
            insecure_min_key_bits=min(key_bits, settings.PAILLIER_MIN_SECURE_BITS),
        )
        for n, c in zip(names, splits, strict=True)
    ]
    relay = Relay()
    run_vertical(holder, passives, relay)
    wall, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
    partials = {
        p.party: p.score_message(xh[te][:, c], "test")
        for p, c in zip(passives, splits, strict=True)
    }
    auc = roc_auc_score(y[te], holder.decision_function(xg[te], partials, "test"))
    epochs = len(relay.history)
    label = f"vertical, {1 + len(splits)} silos, Paillier {key_bits}"
    _row(label, wall, cpu, epochs, relay.bytes_relayed // epochs, auc)
    joined = np.hstack([xg, xh])
    sk_cpu = time.process_time()
    sk_wall, sk_auc = _sklearn(joined[tr], y[tr], joined[te], y[te], config.l2)
    _row("  scikit-learn, pooled", sk_wall, time.process_time() - sk_cpu, "-", "-", sk_auc)
    print(
        "  epochs: "
        + ", ".join(
            f"{h['epoch']}: loss {h['train_loss']:.5f} at {h['seconds']:.1f}s"
            for h in relay.history
        )
    )


def bench_horizontal() -> None:
    parts = [_csv(f"default_credit_homo_{n}.csv") for n in ("guest", "host_1", "host_2")]
    test = _csv("default_credit_homo_test.csv")
    n_rows = sum(p.shape[0] for p in parts)
    config = HLRConfig(l2=1.0 / n_rows)
    names = [f"x{i}" for i in range(parts[0].shape[1] - 2)]
    start, cpu = time.perf_counter(), _cpu_seconds()
    silos = [
        HorizontalSilo(
            p[:, 2:],
            p[:, 1],
            feature_names=names,
            config=config,
            party=f"bank{i}",
            n_silos=len(parts),
        )
        for i, p in enumerate(parts)
    ]
    relay = Relay()
    model = run_horizontal(silos, relay)
    wall, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
    auc = roc_auc_score(test[:, 1], model.decision_function(test[:, 2:]))
    rounds = len(relay.history)
    _row("horizontal, 3 silos, CKKS 8192", wall, cpu, rounds, relay.bytes_relayed // rounds, auc)
    pooled = np.vstack(parts)
    sk_cpu = time.process_time()
    sk_wall, sk_auc = _sklearn(pooled[:, 2:], pooled[:, 1], test[:, 2:], test[:, 1], config.l2)
    _row("  scikit-learn, pooled", sk_wall, time.process_time() - sk_cpu, "-", "-", sk_auc)


def _timed(fn: Callable[[], object], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def bench_primitives(key_bits: int) -> None:
    import tenseal as ts

    from fedsilo.crypto import ckks

    rows, feats = 4096, 10
    rng = np.random.default_rng(0)
    rho, x = rng.normal(size=rows) / rows, rng.normal(size=(rows, feats))
    public, key = paillier.generate_keypair(key_bits, insecure_min_bits=key_bits)
    r_int = he.residual_integers(rho, settings.LR_RESIDUAL_FRAC_BITS)
    x_int = he.feature_exponents(x, settings.LR_FEATURE_FRAC_BITS)
    enc = he.encrypt_residuals(ObfuscatorStock(key), r_int)
    print(
        f"\nprimitives: {rows} rows x {feats} features, best of 3, ms "
        f"({parallel.workers()} pool workers, load average {os.getloadavg()[0]:.2f})"
    )
    width, window = public.ciphertext_bytes, settings.LR_MULTIEXP_WINDOW_BITS

    def show(label: str, ms: float) -> None:
        print(f"  {label:<62} {ms:9.1f}")

    show(
        f"Paillier {key_bits} encrypt residuals (CRT + fixed base, pool)",
        _timed(lambda: he.encrypt_residuals(ObfuscatorStock(key), r_int)),
    )
    show(
        f"Paillier {key_bits} [r] x X, bucket multi-exp (pool)",
        _timed(lambda: he.encrypted_gradient(public, enc, x_int)),
    )
    show(
        f"Paillier {key_bits} [r] x X, bucket multi-exp (one core)",
        _timed(lambda: he._gradient_chunk(int(public.n), enc, width, x_int, window), 1),
    )
    ctx = ckks.make_context()
    ctx.generate_galois_keys()
    vec = ts.ckks_vector(ctx, rho.tolist())
    cols = [x[:, j].tolist() for j in range(feats)]
    show(
        "CKKS 8192 encrypt residuals (one ciphertext)",
        _timed(lambda: ts.ckks_vector(ctx, rho.tolist())),
    )
    show(
        "CKKS 8192 [r] x X, slot-wise products only (one core)",
        _timed(lambda: [vec * c for c in cols]),
    )
    show(
        "CKKS 8192 [r] x X, products + rotation sums (one core)",
        _timed(lambda: [(vec * c).sum() for c in cols]),
    )
    print(f"  CKKS galois keys for the sums: {len(ctx.serialize(save_secret_key=False)):,} bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key-bits", type=int, default=settings.PAILLIER_KEY_BITS)
    parser.add_argument("--skip-three", action="store_true", help="no 3-silo vertical run")
    parser.add_argument("--primitives", action="store_true", help="only the HE step comparison")
    args = parser.parse_args()
    parallel.map_chunks(abs, [-1, -2, -3, -4])  # warm the pool (spawn start-up is one-off)
    if args.primitives:
        bench_primitives(args.key_bits)
        return
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"{'run':<40} {'wall s':>7} {'cpu s':>7} {'epochs':>7} {'B/epoch':>12} {'test AUC':>8}")
    bench_vertical(args.key_bits, [np.arange(10)])
    if not args.skip_three:
        bench_vertical(args.key_bits, [np.arange(5), np.arange(5, 10)])
    bench_horizontal()


if __name__ == "__main__":
    main()
