"""Column statistics and the cross-silo correlation matrix beside numpy on the pooled data.

    python bench/bench_stats.py [--rows 25000] [--key-bits 2048] [--three]

Data: ``default_credit_hetero_{guest,host}`` (bundled, tests/data/README.md), the first
``--rows`` aligned rows: the label holder's 13 columns against the host's 10 (``--three``: the
host split 5 + 5 over two silos, so three blocks). Every silo runs in this process
(``fedsilo.protocols.stats.local``), every message encoded and decoded as on the wire; the shared
process pool is warmed first (a silo node's pool is long-lived).

Rows of the table. ``cross-silo 13 x 10`` is the correlation block alone: key generation,
encrypting the 13 packed columns per row (one ciphertext per row), the evaluator's 10
multi-exponentiations and re-randomisation, decryption; ``stats step`` is the whole step as a job
runs it (profiles with quantiles and distinct counts at every silo, within-silo blocks, the
cross-silo blocks, the matrix and VIFs). ``numpy pooled`` is ``np.corrcoef`` (and the same
profile) on the pooled matrix, which no silo could compute. ``wall s`` moves with the machine's
load, ``cpu s`` (this process and the pool's workers) does not; ``max |dr|`` is the largest
difference from ``np.corrcoef`` on the pooled columns.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from bench_lr import _cpu_seconds

from fedsilo import parallel
from fedsilo.ml.relay import Relay
from fedsilo.protocols.stats.correlation import Encrypter, cross_products
from fedsilo.protocols.stats.local import run_in_process
from fedsilo.protocols.stats.party import StatsParams, StatsParty
from fedsilo.protocols.stats.profile import profile_columns, standardise, vif

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"  # bundled: tests/data/README.md
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def _timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), _cpu_seconds()
    out = fn()
    return out, time.perf_counter() - wall, _cpu_seconds() - cpu


def _data(rows: int) -> tuple[np.ndarray, np.ndarray]:
    guest = np.loadtxt(DATA / "default_credit_hetero_guest.csv.gz", delimiter=",", skiprows=1)
    host = np.loadtxt(DATA / "default_credit_hetero_host.csv.gz", delimiter=",", skiprows=1)
    if not (guest[:, 0] == host[:, 0]).all():
        raise SystemExit("guest and host rows are not aligned")
    return guest[:rows, 2:], host[:rows, 1:]


def _params(bits: int) -> StatsParams:
    return StatsParams(
        quantiles=QUANTILES,
        correlation=True,
        key_bits=bits,
        min_rows=10,
        release_names=True,
        min_key_bits=bits,
    )


def _block(guest: np.ndarray, host: np.ndarray, bits: int) -> tuple[np.ndarray, list[float]]:
    """The 13 x 10 block, and the wall seconds of its phases (key, encrypt, cross, open)."""
    marks = [time.perf_counter()]
    a = standardise(guest, [f"g{i}" for i in range(guest.shape[1])])
    b = standardise(host, [f"h{i}" for i in range(host.shape[1])])
    enc = Encrypter(a, key_bits=bits, insecure_min_bits=bits)
    marks.append(time.perf_counter())
    msg = enc.message()
    marks.append(time.perf_counter())
    reply = cross_products(b, msg, insecure_min_bits=bits)
    marks.append(time.perf_counter())
    block = enc.open(reply)
    marks.append(time.perf_counter())
    return block, [t - s for s, t in zip(marks, marks[1:], strict=False)]


def _silos(guest: np.ndarray, host: np.ndarray, bits: int, three: bool) -> dict[str, StatsParty]:
    p = _params(bits)
    g = StatsParty("bank", guest, [f"g{i}" for i in range(guest.shape[1])], p)
    if not three:
        return {"bank": g, "host": StatsParty("host", host, [f"h{i}" for i in range(10)], p)}
    return {
        "bank": g,
        "bureau": StatsParty("bureau", host[:, :5], [f"b{i}" for i in range(5)], p),
        "lender": StatsParty("lender", host[:, 5:], [f"l{i}" for i in range(5)], p),
    }


def _pooled(guest: np.ndarray, host: np.ndarray) -> np.ndarray:
    x = np.hstack([guest, host])
    profile_columns(x, [f"c{i}" for i in range(x.shape[1])], QUANTILES, 10)
    corr = np.corrcoef(x.T)
    vif(corr)
    return corr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=25_000)
    ap.add_argument("--key-bits", type=int, default=2048)
    ap.add_argument("--three", action="store_true", help="host columns over two silos (5 + 5)")
    args = ap.parse_args()
    parallel.map_chunks(abs, [-1, -2, -3, -4])  # warm the pool (spawn start-up is one-off)
    guest, host = _data(args.rows)
    pooled, np_wall, np_cpu = _timed(lambda: _pooled(guest, host))
    (block, phases), b_wall, b_cpu = _timed(lambda: _block(guest, host, args.key_bits))
    relay = Relay()
    silos = _silos(guest, host, args.key_bits, args.three)
    result, s_wall, s_cpu = _timed(lambda: run_in_process(silos, relay=relay))
    matrix = np.asarray(result["correlation"]["matrix"], dtype=np.float64)
    print(
        f"{args.rows:,} rows, Paillier {args.key_bits} bits, {parallel.workers()} pool workers, "
        f"{'three' if args.three else 'two'} silos in the stats step"
    )
    print(f"{'what':<26}{'wall s':>9}{'cpu s':>9}{'relayed MB':>12}{'max |dr|':>11}")
    block_err = np.abs(block - pooled[:13, 13:]).max()
    step_err = np.abs(matrix - pooled).max()
    print(f"{'numpy pooled (23 x 23)':<26}{np_wall:>9.3f}{np_cpu:>9.3f}{'-':>12}{'-':>11}")
    print(f"{'cross-silo 13 x 10':<26}{b_wall:>9.2f}{b_cpu:>9.2f}{'-':>12}{block_err:>11.1e}")
    key, enc, cross, opened = phases
    print(
        f"{'  of which':<26}key {key:.2f} s, encrypt {enc:.2f} s, cross {cross:.2f} s, "
        f"open {opened:.2f} s (wall)"
    )
    mb = relay.bytes_relayed / 1e6
    print(f"{'stats step (23 columns)':<26}{s_wall:>9.2f}{s_cpu:>9.2f}{mb:>12.1f}{step_err:>11.1e}")


if __name__ == "__main__":
    main()
