"""PSI benchmark: fedsilo's ECDH-PSI against openmined-psi on the same ids, in one run.

    python bench/bench_psi.py [--sizes 100000,1000000] [--repeat 3] [--openmined-ds raw,bloom]
                              [--primitives]

Both parties of each implementation run in one process on the same random string ids (n per
party, 50% overlap, shuffled), both revealing the intersection: fedsilo in alignment mode with the
follower told its rows, openmined-psi with ``reveal_intersection=True`` (its client learns it).
openmined-psi pins an older protobuf than fedsilo's generated code needs, so it runs in its own
virtual environment (``bench/.venv-openmined``, made on first use) in a subprocess that times
itself (``bench/reference/README.md``); its ``main`` memory is that subprocess's peak.

Columns. ``elem/s`` is n / wall time. ``peak RSS`` is the kernel's high-water mark (``VmHWM``,
reset through ``/proc/*/clear_refs`` before each run): ``main`` is this process, which holds BOTH
parties' ids and state (so it bounds each party from above), ``worker`` the largest worker of the
shared pool (fedsilo only; openmined-psi is single threaded). ``held`` is the per-party PSI state
at its peak (leader / follower). ``B/elem`` is every byte the relay carries (encoded messages;
sealing adds 40 bytes per message) over the 2n elements of both sets; openmined-psi counts its
serialized setup, request and response. ``×`` is openmined's wall time over fedsilo's.
With ``--repeat K`` each size runs K times, fedsilo and the reference alternating, and a last table
gives the medians (wall, CPU) and the largest peak memory; its ``×`` is the ratio of the medians.
``CPU s`` is user + system time of this process and the pool's workers during the run: on a
machine shared with other work it shows what the wall time would be without contention
(fedsilo's CPU time over the core count). The 1-minute load average is printed so a reader can
tell.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from reference.isolated import reference_python, run_json

from fedsilo import parallel, settings
from fedsilo.message import Message, decode, encode
from fedsilo.psi import Follower, Leader, Pump
from fedsilo.psi import _x25519 as x
from fedsilo.psi._ids import pack_ids

CTX = b"bench/psi"
#: installed in bench/.venv-openmined, never beside fedsilo (bench/reference/README.md)
OPENMINED_REQUIREMENTS = ["openmined-psi>=2.0"]


@dataclass
class Row:
    name: str
    n: int
    found: int
    wall: float
    rss_main: int
    rss_worker: int
    held: str
    nbytes: int
    cpu: float
    rep: int = 0


@dataclass
class Outcome:
    """What one PSI run returns: intersection size, held state, bytes relayed, a result check."""

    found: int
    held: str
    nbytes: int
    check: Callable[[], None] | None


# --- data and memory ----------------------------------------------------------------------------


def make_ids(n: int, seed: int = 7) -> tuple[list[str], list[str], int]:
    """Two shuffled sets of n unique random-looking string ids sharing n/2 of them."""
    k = np.arange(n // 2 * 3 + n % 2 * 2, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    universe = [f"C{v:016x}" for v in k.tolist()]
    shared, only_a, only_b = n // 2, universe[n // 2 : n], universe[n : n + n - n // 2]
    rng = np.random.default_rng(seed)
    a = universe[:shared] + only_a
    b = universe[:shared] + only_b
    return [a[i] for i in rng.permutation(n)], [b[i] for i in rng.permutation(n)], shared


def _pids() -> list[int]:
    return [os.getpid()] + worker_pids()


def worker_pids() -> list[int]:
    procs = getattr(parallel.pool(), "_processes", None) or {}
    return list(procs)


def reset_hwm() -> None:
    """Reset the RSS high-water mark of this process and the pool's workers (Linux >= 4.0).

    First hand freed heap back to the kernel (glibc ``malloc_trim``): otherwise what an earlier
    run freed but the allocator kept would count as this run's peak.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    for pid in _pids():
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        except OSError:
            pass


def hwm(pid: int) -> int:
    """``VmHWM`` of ``pid`` in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


# --- fedsilo ------------------------------------------------------------------------------------


class Relay:
    """The coordinator's part: messages cross as encoded bytes, and every byte is counted."""

    def __init__(self) -> None:
        self.nbytes = 0

    def __call__(self, msg: Message) -> Message:
        raw = encode(msg)
        self.nbytes += len(raw)
        return decode(raw)


def batches(ids: list[str]) -> Iterator[list[str]]:
    step = settings.PSI_BATCH_IDS
    for i in range(0, len(ids), step):
        yield ids[i : i + step]


def run_fedsilo(a: list[str], b: list[str]) -> Outcome:
    """Leader holds ``a``, one follower ``b``; returns (count, held state, bytes relayed).

    Relay rounds as the coordinator runs them: both parties' rounds run concurrently (one thread
    each, as ``JobRun.call_many`` does), both feeding the shared process pool.
    """
    relay = Relay()
    leader = Leader(context=CTX, followers=["f"], reveal_to=["f"], min_intersection=1)
    follower = Follower(context=CTX, min_intersection=1)
    pumps = {
        "L": Pump(leader, batches(a), leader="L", followers=["f"]),
        "f": Pump(follower, batches(b), leader="L", followers=["f"]),
    }
    peak = [0, 0]
    inflight: dict[str, dict[str, Message]] = {"L": {}, "f": {}}
    with ThreadPoolExecutor(max_workers=2) as threads:
        while True:
            futures = {p: threads.submit(pumps[p].round, inflight[p]) for p in pumps}
            outs = {p: f.result() for p, f in futures.items()}
            inflight = {"L": {}, "f": {}}
            for sender, out in outs.items():
                for recipient, msg in out.items():
                    inflight[recipient][sender] = relay(msg)
            peak = [max(peak[0], leader.held_bytes), max(peak[1], follower.held_bytes)]
            if all(p.idle for p in pumps.values()) and not any(inflight.values()):
                break
    result = leader.finish()
    mine = follower.on_result(relay(result.outbox["f"]))
    held = f"{peak[0] / 2**20:.0f}/{peak[1] / 2**20:.0f} MiB"

    def check() -> None:  # after the clock stops: the benchmark's own check, not PSI work
        assert mine.rows is not None and result.rows is not None
        assert [b[i] for i in mine.rows] == [a[i] for i in result.rows]

    return Outcome(result.count, held, relay.nbytes, check)


# --- openmined-psi --------------------------------------------------------------------------------


def run_openmined(a: list[str], b: list[str], ds_name: str, rep: int = 0) -> Row:
    """Client holds ``a`` and learns the intersection; server holds ``b``. Runs in
    ``bench/.venv-openmined`` and times itself: interpreter start and id files do not count."""
    python = reference_python("openmined", OPENMINED_REQUIREMENTS)
    with tempfile.TemporaryDirectory(prefix="bench-psi-") as tmp:
        paths = [Path(tmp, name) for name in ("client.txt", "server.txt")]
        for path, ids in zip(paths, (a, b), strict=True):
            path.write_text("\n".join(ids) + "\n", encoding="utf-8")
        res = run_json(python, "openmined_psi_run.py", *map(str, paths), ds_name)
    return Row(
        f"openmined-{ds_name}",
        len(a),
        int(res["found"]),
        float(res["wall"]),
        int(res["rss_hwm"]),
        0,
        "-",
        int(res["nbytes"]),
        float(res["cpu"]),
        rep,
    )


# --- driver ---------------------------------------------------------------------------------------


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and of the pool's live workers."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = sum(os.times()[:2])
    for pid in worker_pids():
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def load_average() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def measure(name: str, n: int, fn: Callable[[], Outcome], rep: int = 0) -> Row:
    reset_hwm()
    cpu0, start = cpu_seconds(), time.perf_counter()
    out = fn()
    wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu0
    workers = [hwm(p) for p in worker_pids()] if name == "fedsilo" else [0]
    if out.check is not None:
        out.check()
    rss = hwm(os.getpid())
    return Row(name, n, out.found, wall, rss, max(workers), out.held, out.nbytes, cpu, rep)


def primitives(count: int = 20_000) -> None:
    """Per-operation cost of hashing to the curve, of the curve check of a peer's point, and of
    one X25519 multiplication on each backend, one core (CPU time: a busy host inflates wall)."""
    blob, ends = pack_ids([f"C{i:016x}" for i in range(count)])
    secret = x.new_secret()
    points = x.hash_to_points(blob, ends, CTX).tobytes()
    ops: list[tuple[str, Callable[[], object]]] = [
        ("hash-to-point", lambda: x._hash_chunk(CTX, blob, ends)),
        ("curve check", lambda: x._refuse_twist(points)),
    ]
    for backend in ("openssl", "libsodium"):
        ops.append((f"X25519 {backend}", partial(x._multiplier(secret, backend), points)))
    for name, op in ops:
        start = time.process_time()
        op()
        print(f"{name:17s} {(time.process_time() - start) / count * 1e6:6.1f} µs/op")


def _row_text(r: Row, ratio: str) -> str:
    return (
        f"{r.name:<16}{f'{r.n:,}×{r.n:,}':>17}{r.found:>9,}{r.wall:>9.1f}{r.n / r.wall:>10,.0f}"
        f"{r.cpu:>8.1f}{r.rss_main / 2**20:>7.0f}MiB{r.rss_worker / 2**20:>6.0f}MiB"
        f"{r.held:>14}{r.nbytes / (2 * r.n):>8.1f}{ratio:>7}"
    )


HEAD = (
    f"{'impl':<16}{'n×n':>17}{'found':>9}{'wall s':>9}{'elem/s':>10}"
    f"{'CPU s':>8}{'RSS main':>10}{'RSS wkr':>9}{'held L/F':>14}{'B/elem':>8}{'×':>7}"
)


def median_rows(rows: list[Row]) -> list[Row]:
    """One row per (impl, n): median wall and CPU time, the largest peak memory of the repeats."""
    groups: dict[tuple[str, int], list[Row]] = {}
    for r in rows:
        groups.setdefault((r.name, r.n), []).append(r)
    return [
        Row(
            name, n, g[0].found,
            float(np.median([r.wall for r in g])),
            max(r.rss_main for r in g), max(r.rss_worker for r in g), g[0].held, g[0].nbytes,
            float(np.median([r.cpu for r in g])),
        )
        for (name, n), g in groups.items()
    ]  # fmt: skip


def print_table(rows: list[Row], title: str) -> None:
    """Rows with ``×`` = this row's wall time over fedsilo's (the same repeat, or the medians)."""
    print(title)
    print(HEAD)
    fed: dict[tuple[int, int], float] = {}
    for r in rows:
        if r.name == "fedsilo":
            fed[(r.n, r.rep)] = r.wall
        ratio = fed.get((r.n, r.rep))
        print(_row_text(r, f"{r.wall / ratio:.2f}" if ratio else "-"))
    print(f"load average (1 min) now: {load_average()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="100000", help="comma-separated n per party")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each, alternating; medians")
    ap.add_argument("--openmined-ds", default="raw", help="raw, gcs, bloom (comma-separated)")
    ap.add_argument("--skip-openmined", action="store_true")
    ap.add_argument("--primitives", action="store_true", help="per-op cost of each X25519 backend")
    args = ap.parse_args()
    if args.primitives:
        primitives()
        return
    warm = [f"w{i}" for i in range(parallel.workers() * settings.PSI_WORK_CHUNK_IDS)]
    x.hash_and_blind(x.new_secret(), warm, CTX)  # start the pool's workers before timing
    print(
        f"cores: {os.cpu_count()}, workers: {parallel.workers()}, batch: {settings.PSI_BATCH_IDS}, "
        f"work chunk: {settings.PSI_WORK_CHUNK_IDS}, load average (1 min) at start: "
        f"{load_average()}"
    )
    rows: list[Row] = []
    for n in (int(s) for s in args.sizes.split(",")):
        a, b, shared = make_ids(n)
        for rep in range(args.repeat):
            found = [measure("fedsilo", n, lambda a=a, b=b: run_fedsilo(a, b), rep)]
            for ds in [] if args.skip_openmined else args.openmined_ds.split(","):
                found.append(run_openmined(a, b, ds, rep))
            assert all(r.found == shared for r in found if not r.name.endswith(("gcs", "bloom")))
            rows += found
            print_table(found, f"n = {n:,}, run {rep + 1} of {args.repeat}")
    if args.repeat > 1:
        print_table(median_rows(rows), f"medians of {args.repeat} runs")


if __name__ == "__main__":
    main()
