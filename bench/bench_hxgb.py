"""Horizontal federated XGBoost against XGBoost on the pooled rows, from one run on this machine.

    python bench/bench_hxgb.py                  # 30 trees of depth 3, max_bin 32, three silos
    python bench/bench_hxgb.py --trees 100 --depth 6 --max-bin 256
    python bench/bench_hxgb.py --skip-service   # the in-process protocol and xgboost only

Data: ``default_credit_homo_guest/host_1/host_2`` (8,000 rows each, 23 features) as the three
silos, tested on ``default_credit_homo_test`` (6,000 rows). Also runs a non-identical split:
the pooled rows cut into three silos by terciles of LIMIT_BAL (x13), so each silo's feature and
label distributions differ.

Three ways to train, per split:

* ``xgboost``: hist, same parameters, pooled rows (the reference).
* ``fedsilo in-process``: :func:`fedsilo.protocols.hxgb.training.train_in_process`, every silo, the
  aggregator and the CKKS work in this one process, one after the other (a deployment runs the silos
  concurrently, so its critical path is about ``silo s / silos + aggregator s`` plus network).
* ``fedsilo service``: the real thing over gRPC with mTLS on loopback: three silo nodes (SQLite
  databases, each reads its rows from its own table) and the coordinator running the ``hxgb`` job
  step (``fedsilo.coordinator.orchestrator.run_job``), all in this process, so the silos share
  its cores and its GIL. Wall time is the whole job: sessions, reading data, training, storing
  the model and its xgboost export at every silo. AUC is that of the model a silo stored.

Prints wall time, CPU seconds of this process, secure-sum rounds, MiB the coordinator carries
(in-process: every encoded update to the coordinator, every sum back to each silo, the keys;
service: the job's ``relayed_bytes``, the same messages inside step envelopes), test AUC.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb
from sklearn.metrics import roc_auc_score
from sqlalchemy import create_engine

from fedsilo.coordinator.client import SiloClient
from fedsilo.coordinator.config import load_coordinator_config, parse_job_spec
from fedsilo.coordinator.connect import connect_silos
from fedsilo.coordinator.orchestrator import run_job
from fedsilo.coordinator.store import JobStore
from fedsilo.crypto import certs
from fedsilo.protocols.hxgb.training import HxgbParams, HxgbSilo, train_in_process
from fedsilo.silo_node.demo_data import load_csv_into_table
from fedsilo.silo_node.node import SiloNode, start_silo
from fedsilo.silo_node.predict import get_predictor

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"  # bundled: tests/data/README.md
Part = tuple[np.ndarray, np.ndarray]


def load(name: str) -> Part:
    a = np.loadtxt(DATA / f"{name}.gz", delimiter=",", skiprows=1)
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


# --- the service path: silo nodes and the coordinator over gRPC (mTLS) on loopback ------------

SILOS = ("guest", "host_1", "host_2")
FEATURES = [f"x{i}" for i in range(23)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_csv(path: Path, part: Part) -> None:
    """``id,y,x0..x22`` with exact float text, so the silo reads back the very same values."""
    x, y = part
    table = np.column_stack([np.arange(len(y)), y, x])
    np.savetxt(
        path,
        table,
        delimiter=",",
        fmt=["%d", "%d"] + ["%.17g"] * x.shape[1],
        header=",".join(["id", "y", *FEATURES]),
        comments="",
    )


def _silo_toml(root: Path, party: str, datasets: list[str]) -> Path:
    tables = "".join(
        f'[datasets.{d}]\ntable = "{d}"\nid_column = "id"\n'
        f'features = {json.dumps(FEATURES)}\nlabel = "y"\n'
        for d in datasets
    )
    path = root / f"{party}.toml"
    path.write_text(
        f'party = "{party}"\nlisten = "127.0.0.1:{_free_port()}"\n'
        f'database = "sqlite:///{party}.db"\n[tls]\nca = "certs/ca.pem"\n'
        f'cert = "certs/{party}.pem"\nkey = "certs/{party}.key"\ncoordinator = "coordinator"\n'
        f'{tables}[policy]\nprotocols = ["hxgb"]\nroles = ["member"]\n'
    )
    return path


def _consortium(root: Path, parts: list[Part], test: Part) -> dict[str, Path]:
    """CA, certificates, a SQLite database and a config per silo; the guest holds the test set."""
    certs.init_ca(root / "certs", name="bench consortium CA")
    certs.issue(root / "certs", "coordinator", role="coordinator")
    for name in SILOS:
        certs.issue(root / "certs", name, role="silo")
    configs = {}
    for party, part in zip(SILOS, parts, strict=True):
        data = {"train": part, **({"test": test} if party == "guest" else {})}
        engine = create_engine(f"sqlite:///{root / (party + '.db')}")
        for dataset, rows in data.items():
            _write_csv(root / f"{party}_{dataset}.csv", rows)
            load_csv_into_table(engine, dataset, root / f"{party}_{dataset}.csv", "id")
        engine.dispose()
        configs[party] = _silo_toml(root, party, list(data))
    return configs


def run_service(parts: list[Part], test: Part, params: HxgbParams) -> dict[str, float]:
    """One ``hxgb`` job over gRPC between three silo nodes; figures of the whole job."""
    with tempfile.TemporaryDirectory(prefix="bench-hxgb-") as tmp:
        root = Path(tmp)
        configs = _consortium(root, parts, test)
        nodes: dict[str, SiloNode] = {p: start_silo(path) for p, path in configs.items()}
        clients: dict[str, SiloClient] = {}
        try:
            silos = "".join(f'[silos.{p}]\naddress = "{n.address}"\n' for p, n in nodes.items())
            (root / "coordinator.toml").write_text(
                f'name = "coordinator"\ndatabase = "sqlite:///coordinator.db"\n[tls]\n'
                f'ca = "certs/ca.pem"\ncert = "certs/coordinator.pem"\n'
                f'key = "certs/coordinator.key"\n{silos}'
            )
            consortium = load_coordinator_config(root / "coordinator.toml")
            step: dict[str, Any] = {
                "kind": "hxgb",
                **{k: v for k, v in asdict(params).items() if v is not None},
            }
            spec = parse_job_spec(
                {
                    "name": "bench",
                    "steps": [step],
                    "parties": {p: {"dataset": "train", "role": "member"} for p in SILOS},
                },
                root / "job.toml",
            )
            clients = connect_silos(consortium)
            cpu, start = time.process_time(), time.perf_counter()
            record = run_job(spec, clients=clients, store=JobStore(consortium.database_url))
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu
            part = nodes["guest"].ctx.store.load_model_part(f"{record.job_id}-hxgb").payload
        finally:
            for client in clients.values():
                client.channel.close()
            for node in nodes.values():
                node.stop(grace=None)
    scores = get_predictor("hxgb").combine(part, test[0], {})
    out = record.result["1:hxgb"]
    return {
        "wall": wall,
        "cpu": cpu,
        "rounds": out["rounds"],
        "trees": out["trees"],
        "mib": record.result["relayed_bytes"] / 2**20,
        "auc": float(roc_auc_score(test[1], scores)),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trees", type=int, default=30)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--max-bin", type=int, default=32)
    ap.add_argument("--eta", type=float, default=0.3)
    ap.add_argument("--skip-service", action="store_true", help="do not run the gRPC service path")
    args = ap.parse_args()
    params = HxgbParams(
        n_estimators=args.trees,
        max_depth=args.depth,
        max_bin=args.max_bin,
        learning_rate=args.eta,
        reg_lambda=1.0,
    )
    parts = [load(f"default_credit_homo_{n}.csv") for n in SILOS]
    test = load("default_credit_homo_test.csv")
    print(
        f"horizontal XGBoost, {args.trees} trees of depth {args.depth}, max_bin {args.max_bin}, "
        f"eta {args.eta}, 3 silos x 8,000 rows, 23 features; test 6,000 rows; "
        f"{os.cpu_count()} cores"
    )
    head = f"{'split':10}{'':26}{'wall s':>8}{'CPU s':>8}{'rounds':>8}{'MiB':>9}{'AUC':>9}"
    print(head + f"{'silo s':>9}{'agg s':>8}")
    for name, data in (("given", parts), ("by x13", skewed(parts))):
        xgb_wall, xgb_auc = run_xgboost(data, test, params)
        fed = run_fedsilo(data, test, params)
        print(
            f"{name:10}{'xgboost (hist, pooled)':26}{xgb_wall:>8.2f}{'':>8}{'':>8}{'':>9}"
            f"{xgb_auc:>9.4f}"
        )
        print(
            f"{'':10}{'fedsilo in-process':26}{fed['wall']:>8.2f}{fed['cpu']:>8.2f}"
            f"{fed['rounds']:>8.0f}{fed['mib']:>9.1f}{fed['auc']:>9.4f}{fed['silo']:>9.2f}"
            f"{fed['agg']:>8.2f}"
        )
        if not args.skip_service:
            svc = run_service(data, test, params)
            print(
                f"{'':10}{'fedsilo service (gRPC)':26}{svc['wall']:>8.2f}{svc['cpu']:>8.2f}"
                f"{svc['rounds']:>8.0f}{svc['mib']:>9.1f}{svc['auc']:>9.4f}"
            )
        print(f"{'':10}{'AUC difference (in-proc)':26}{'':>41}{fed['auc'] - xgb_auc:>+9.4f}")
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
