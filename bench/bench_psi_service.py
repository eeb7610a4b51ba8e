"""PSI through the real service: silo processes over gRPC on SQLite tables, memory per party.

    python bench/bench_psi_service.py                      # 2 silos, 1,000,000 rows each
    python bench/bench_psi_service.py --rows 10000000      # the 10M-row tables of issue 3
    python bench/bench_psi_service.py --silos 3 --rows 200000

``bench_psi.py`` measures the protocol in one process against openmined-psi; this one measures
what an operator runs: ``fedsilo silo serve`` subprocesses (one per party, each with its own pool
of worker processes), the coordinator in this process relaying every batch over loopback gRPC
(plaintext transport; every silo-to-silo message is still sealed per job), ids read from each
silo's SQLite table in batches, the alignment stored in each silo's own database.

Data (not timed): ``--rows`` random string ids per silo in a table with the id as primary key;
every silo holds the first half of a shared universe, the rest of its rows are its own, so the
intersection is exactly ``rows // 2``.

Columns. ``wall s``: the PSI job as ``fedsilo run`` would time it (open, rounds, finish, commit,
close). Memory: ``VmHWM`` of each silo's server process, and the largest and the summed peak of
its child processes (pool workers and multiprocessing's resource tracker), read after the job.
Each is a high-water mark, so the sum bounds the party's memory from above (children share
pages, so it overcounts). The job's stored alignment is counted in each silo's database after.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_psi import hwm
from bench_score import free_port, start_silo, stop_silo
from sqlalchemy import create_engine, text

from fedsilo.coordinator.config import load_coordinator_config, parse_job_spec
from fedsilo.coordinator.connect import connect_silos
from fedsilo.coordinator.orchestrator import run_job
from fedsilo.coordinator.store import JobStore

PARTIES = ("bank", "bureau", "lender", "telco", "insurer")


def make_table(path: Path, party: int, rows: int) -> None:
    """``rows`` ids: the shared half ``s…`` and ``rows - rows // 2`` of this party's own."""
    shared = rows // 2
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE data (id TEXT PRIMARY KEY, x REAL NOT NULL)")
    rng = np.random.default_rng(party)
    step = 500_000
    for start in range(0, rows, step):
        stop = min(rows, start + step)
        keys = np.arange(start, stop, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        ids = [
            f"s{k:016x}" if i < shared else f"p{party}{k:016x}"
            for i, k in zip(range(start, stop), keys.tolist(), strict=True)
        ]
        values = zip(ids, rng.random(len(ids)).tolist(), strict=True)
        con.executemany("INSERT INTO data VALUES (?, ?)", values)
        con.commit()
    con.close()


def silo_config(root: Path, party: str, port: int) -> Path:
    path = root / f"{party}.toml"
    path.write_text(
        f'party = "{party}"\nlisten = "127.0.0.1:{port}"\n'
        f'database = "sqlite:///{root / (party + ".db")}"\n[tls]\ninsecure_plaintext = true\n'
        '[datasets.main]\ntable = "data"\nid_column = "id"\nfeatures = ["x"]\n'
        '[policy]\nprotocols = ["psi"]\nroles = ["active", "passive"]\n'
    )
    return path


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (its pool's workers), from every thread's ``children`` list."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text_ = (task / "children").read_text().split()
        out += [int(c) for c in text_]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="ids per silo")
    ap.add_argument("--silos", type=int, default=2, choices=range(2, len(PARTIES) + 1))
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench_psi_service_"))
    parties = PARTIES[: args.silos]

    start = time.perf_counter()
    for i, party in enumerate(parties):
        make_table(root / f"{party}.db", i, args.rows)
    t_data = time.perf_counter() - start
    ports = {p: free_port() for p in parties}
    configs = {p: silo_config(root, p, ports[p]) for p in parties}
    coord = root / "coordinator.toml"
    coord.write_text(
        f'name = "coordinator"\ndatabase = "sqlite:///{root / "coord.db"}"\n'
        "[tls]\ninsecure_plaintext = true\n"
        + "".join(f'[silos.{p}]\naddress = "127.0.0.1:{ports[p]}"\n' for p in parties)
    )
    config = load_coordinator_config(coord)
    jobs = JobStore(config.database_url)
    roles = {p: "active" if i == 0 else "passive" for i, p in enumerate(parties)}
    spec = parse_job_spec(
        {
            "name": "psi",
            "parties": {p: {"dataset": "main", "role": r} for p, r in roles.items()},
            "steps": [{"kind": "psi", "alignment": "all", "reveal": "all"}],
        },
        root / "job.toml",
    )

    procs = {p: start_silo(configs[p]) for p in parties}
    try:
        clients = connect_silos(config)
        start = time.perf_counter()
        record = run_job(spec, clients=clients, store=jobs)
        wall = time.perf_counter() - start
        assert record.state == "succeeded", record.reason
        memory = {}
        for p, proc in procs.items():
            workers = [hwm(c) for c in children(proc.pid)]
            memory[p] = (hwm(proc.pid), max(workers, default=0), sum(workers), len(workers))
    finally:
        for proc in procs.values():
            stop_silo(proc)

    stored = {}
    for p in parties:
        engine = create_engine(f"sqlite:///{root / (p + '.db')}")
        with engine.connect() as conn:
            stored[p] = conn.execute(
                text("SELECT rows FROM fedsilo_alignment WHERE name = 'all'")
            ).scalar_one()
        engine.dispose()
    want = args.rows // 2

    print(
        f"PSI through the service: {args.silos} silos × {args.rows:,} ids (SQLite, id primary "
        f"key), intersection {want:,}, loopback gRPC (plaintext transport, sealed messages); "
        f"tables built in {t_data:.0f} s (not timed)"
    )
    print(f"PSI job: {wall:.1f} s wall, {args.rows / wall:,.0f} ids/s per silo")
    print(f"{'party':<10}{'role':<9}{'server MiB':>11}{'worker max':>11}{'workers Σ':>11}"
          f"{'party Σ MiB':>12}{'stored rows':>13}")  # fmt: skip
    for p in parties:
        main_, wmax, wsum, nw = memory[p]
        print(
            f"{p:<10}{roles[p]:<9}{main_ / 2**20:>11.0f}{wmax / 2**20:>11.0f}"
            f"{wsum / 2**20:>8.0f} ({nw}){(main_ + wsum) / 2**20:>9.0f}{stored[p]:>13,}"
        )
    ok = all(stored[p] == want for p in parties)
    print("every silo stored exactly the intersection" if ok else "WRONG alignment size")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
