"""How fast ``fedsilo jobs cancel`` stops a running SecureBoost job, and what a rerun costs.

    python bench/bench_cancel.py                 # cancels at 2, 6 and 10 s into training
    python bench/bench_cancel.py --at 1 3

Three silos (breast: bank with labels and 10 columns, bureau and telco 10 columns each) serve
in this process over real gRPC on loopback under mTLS, with default keys (2048-bit Paillier).
For each delay, a PSI + SecureBoost (4 trees, depth 3) job starts; once its tree progress is
recorded, the bench waits the delay, writes the cancel request into the coordinator's store
(what ``fedsilo jobs cancel`` does) and times until ``run_job`` raises ``JobCancelled`` (every
silo's session closed by then). Then the same job runs to the end. Prints one line per run.
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine

from fedsilo.coordinator.config import load_coordinator_config, parse_job_spec
from fedsilo.coordinator.connect import connect_silos
from fedsilo.coordinator.orchestrator import run_job
from fedsilo.coordinator.store import JobStore
from fedsilo.crypto import certs
from fedsilo.errors import JobCancelled
from fedsilo.silo_node.demo_data import load_csv_into_table
from fedsilo.silo_node.node import SiloNode, start_silo

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
COLUMNS = {
    "bank": ("breast_hetero_guest", [f"x{i}" for i in range(10)], "y"),
    "bureau": ("breast_hetero_host", [f"x{i}" for i in range(10)], None),
    "telco": ("breast_hetero_host", [f"x{i}" for i in range(10, 20)], None),
}
PARTIES = {"bank": "active", "bureau": "passive", "telco": "passive"}
#: long enough that a cancel 10 s into training lands inside it on a quiet machine
TREES = 40
STEPS: list[dict[str, Any]] = [
    {"kind": "psi", "alignment": "b", "replace": True},
    {"kind": "secureboost", "n_estimators": TREES, "max_depth": 3, "max_bin": 16},
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tls(root: Path, party: str, *, silo: bool) -> str:
    folder = root / "certs"
    extra = 'coordinator = "coordinator"\n' if silo else ""
    return (
        f'[tls]\nca = "{folder / "ca.pem"}"\ncert = "{folder / f"{party}.pem"}"\n'
        f'key = "{folder / f"{party}.key"}"\n{extra}'
    )


def _consortium(root: Path) -> tuple[dict[str, SiloNode], Path]:
    certs.init_ca(root / "certs", name="bench consortium")
    certs.issue(root / "certs", "coordinator", role="coordinator")
    nodes, silos = {}, ""
    for party, (csv, features, label) in COLUMNS.items():
        certs.issue(root / "certs", party, role="silo")
        url = f"sqlite:///{root / party}.db"
        engine = create_engine(url)
        load_csv_into_table(engine, "data", DATA / f"{csv}.csv.gz", "id")
        engine.dispose()
        label_line = f'label = "{label}"\n' if label else ""
        path = root / f"{party}.toml"
        path.write_text(
            f'party = "{party}"\nlisten = "127.0.0.1:{_free_port()}"\ndatabase = "{url}"\n'
            f"{_tls(root, party, silo=True)}"
            f'[datasets.main]\ntable = "data"\nid_column = "id"\n'
            f"features = {features!r}\n{label_line}".replace("'", '"')
            + '[policy]\nprotocols = ["psi", "secureboost"]\nroles = ["active", "passive"]\n'
        )
        nodes[party] = start_silo(path)
        silos += f'[silos.{party}]\naddress = "{nodes[party].address}"\n'
    coordinator = root / "coordinator.toml"
    coordinator.write_text(
        f'name = "coordinator"\ndatabase = "sqlite:///{root / "coord.db"}"\n'
        f"{_tls(root, 'coordinator', silo=False)}{silos}"
    )
    return nodes, coordinator


def _training(store: JobStore, job_id: str) -> bool:
    tasks = store.progress(job_id).get("tasks", [])
    return any(str(t["description"]).startswith("SecureBoost") for t in tasks)


def _cancel_after(config: Path, store: JobStore, delay: float) -> str:
    spec = parse_job_spec({"name": "bench", "parties": _parties(), "steps": STEPS}, config)
    job_id = store.create_job(spec.name, spec.to_wire(""))
    clients = connect_silos(load_coordinator_config(config))
    ended: dict[str, Any] = {}

    def run() -> None:
        try:
            run_job(spec, clients=clients, store=store, job_id=job_id)
        except JobCancelled as err:
            ended["at"], ended["err"] = time.monotonic(), err

    thread = threading.Thread(target=run)
    thread.start()
    while not _training(store, job_id):
        time.sleep(0.05)
    time.sleep(delay)
    asked = time.monotonic()
    store.request_cancel(job_id)
    thread.join()
    trees = next(
        t["completed"]
        for t in store.progress(job_id)["tasks"]
        if str(t["description"]).startswith("SecureBoost")
    )
    state = store.get_job(job_id).state
    if "at" not in ended:  # the job ended before the request was seen
        return f"cancel {delay:.0f} s into training: too late, the job ended {state}"
    return (
        f"cancel {delay:.0f} s into training ({trees:.0f} of {TREES} trees done): {state} "
        f"{ended['at'] - asked:.2f} s after the request"
    )


def _parties() -> dict[str, dict[str, str]]:
    return {p: {"dataset": "main", "role": r} for p, r in PARTIES.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--at", type=float, nargs="+", default=[2.0, 6.0, 10.0])
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        nodes, config = _consortium(Path(tmp))
        store = JobStore(load_coordinator_config(config).database_url)
        try:
            for delay in opts.at:
                print(_cancel_after(config, store, delay), flush=True)
            spec = parse_job_spec({"name": "bench", "parties": _parties(), "steps": STEPS}, config)
            started = time.monotonic()
            rec = run_job(spec, clients=connect_silos(load_coordinator_config(config)), store=store)
            print(f"rerun of the same job: {rec.state} in {time.monotonic() - started:.1f} s")
        finally:
            for node in nodes.values():
                node.stop(grace=None)


if __name__ == "__main__":
    main()
