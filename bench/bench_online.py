"""Online scoring latency and throughput at the label holder's HTTP endpoint, against batch.

    python bench/bench_online.py                  # the fraud consortium (issuer = label holder,
                                                  # acquirer), SecureBoost 100 trees depth 4
    python bench/bench_online.py --data credit    # the bundled credit consortium (bank, bureau,
                                                  # lender)
    python bench/bench_online.py --party issuer=issuer.csv.gz:active \\
        --party acquirer=acquirer.csv.gz:passive --label tx_fraud --id-column tx_id  # any CSVs
    python bench/bench_online.py --seconds 5 --trees 20  # quicker

The fraud data (the default) is simulated at the start with ``fedsilo.fraudsim`` (``--rows``
transactions, ``--sim-seed``; the same seed gives the same bytes) and split as ``fedsilo demo
fraud`` splits it: the issuer (amount, time, its customers' spending windows, the fraud label)
and the acquirer (its terminals' delayed risk windows), joined by transaction id.

Setup (not timed): each party's CSV is loaded into its silo's SQLite database; a SecureBoost
model (``--trees``, ``--depth``) and a vertical LR model are trained in process on a sample of
the common ids with explicitly insecure small Paillier keys (the trees and weights do not
depend on the key size; serving uses no Paillier), cached as JSON, stored as each silo's part and
registered at the coordinator. One ``fedsilo silo serve`` process per party with mTLS (one
consortium CA; the label holder's HTTP endpoint is HTTPS with a client certificate too) and one
``fedsilo serve MODEL`` process (the coordinator's relay) run on loopback.

Timed, from this process (the bank's applications: persistent HTTPS connections):

1. single requests, open loop at ``--rate`` requests/s (default 100): p50 / p99 end to end
   (from the scheduled send time, so queueing counts), target p50 <= 10 ms, p99 <= 40 ms;
2. sustained micro-batched load: ``--clients`` closed-loop clients posting ``--batch``
   transactions each; transactions/s and p99 per request, target >= 2,000 tx/s, p99 <= 100 ms;
3. the same two for vertical LR;
4. batch scoring of the whole alignment (PSI, then the ``score`` step) for the cost per score:
   wall and CPU time (all silo and relay processes, from /proc) per 1,000 scores, beside the
   online figures.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from serving_support import (  # noqa: E402  (tests/ on the path first)
    DEMO,
    ID,
    LABEL,
    ROLES,
    common_sample,
    install,
    read_consortium,
    register,
    train_parts,
)

from fedsilo.coordinator.config import load_coordinator_config, parse_job_spec  # noqa: E402
from fedsilo.coordinator.connect import connect_silos  # noqa: E402
from fedsilo.coordinator.orchestrator import run_job  # noqa: E402
from fedsilo.coordinator.store import JobStore  # noqa: E402
from fedsilo.crypto import certs  # noqa: E402
from fedsilo.fraudsim import (  # noqa: E402
    ISSUER_LABEL,
    TX_ID,
    SimConfig,
    simulate,
    split_parties,
    write_party_csvs,
)
from fedsilo.silo_node.demo_data import load_csv_into_table  # noqa: E402

#: the first failures of a run, printed with the figures
ERRORS: list[str] = []
TARGETS = {"p50_single_ms": 10.0, "p99_single_ms": 40.0, "tx_per_s": 2000.0, "p99_load_ms": 100.0}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(x) for x in items) + "]"


@dataclass
class Setup:
    root: Path
    tables: dict[str, Any]
    roles: dict[str, str]
    ports: dict[str, int]
    http_port: int
    models: dict[str, str]
    procs: dict[str, subprocess.Popen[str]]


def _silo_toml(
    root: Path,
    party: str,
    port: int,
    cols: list[str],
    args: argparse.Namespace,
    roles: dict[str, str],
    models: list[str],
    http_port: int,
) -> Path:
    c = root / "certs"
    tls = (
        f'[tls]\nca = "{c / "ca.pem"}"\ncert = "{c / (party + ".pem")}"\n'
        f'key = "{c / (party + ".key")}"\ncoordinator = "coordinator"\n'
    )
    label = f'label = "{args.label}"\n' if roles[party] == "active" else ""
    serving = ""
    if roles[party] == "active":
        serving = (
            f'[serving]\nlisten = "127.0.0.1:{http_port}"\nca = "{c / "ca.pem"}"\n'
            f'cert = "{c / (party + ".pem")}"\nkey = "{c / (party + ".key")}"\n'
        )
    path = root / f"{party}.toml"
    path.write_text(
        f'party = "{party}"\nlisten = "127.0.0.1:{port}"\n'
        f'database = "sqlite:///{root / (party + ".db")}"\n{tls}'
        f'[datasets.main]\ntable = "{party}_data"\nid_column = "{args.id_column}"\n'
        f"features = {toml_list(cols)}\n{label}"
        '[policy]\nprotocols = ["psi", "score", "serve"]\nroles = ["active", "passive"]\n'
        f"serve_models = {toml_list(models)}\nserve_rate_limit = 1000000\n"
        f"serve_daily_budget = 1000000000\n{serving}"
    )
    return path


def _start(cmd: list[str], marker: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if marker in line:
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
            return proc
    raise RuntimeError(f"{' '.join(cmd[3:6])} did not start:\n{''.join(lines)}")


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _trained(
    kind: str,
    tables: dict[str, Any],
    ids: list[str],
    params: dict[str, Any],
    roles: dict[str, str],
    cache: Path,
) -> dict[str, Any]:
    key = json.dumps(
        {
            "kind": kind,
            "params": params,
            "rows": len(ids),
            "ids": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
            "roles": roles,
            "cols": {p: t.columns for p, t in tables.items()},
        },
        sort_keys=True,
    )
    if cache.exists():
        saved = json.loads(cache.read_text())
        if saved.get("key") == key:
            return dict(saved["parts"])
    t0 = time.perf_counter()
    parts = train_parts(kind, tables, ids, params, roles)
    print(f"trained {kind} in {time.perf_counter() - t0:.0f} s", flush=True)
    cache.write_text(json.dumps({"key": key, "parts": parts}))
    return parts


def fraud_consortium(folder: Path, rows: int, seed: int) -> tuple[dict[str, str], dict[str, Path]]:
    """Simulate ``rows`` card transactions (seeded) and write the issuer's and the acquirer's
    CSVs as ``fedsilo demo fraud`` splits them; (roles, paths)."""
    t0 = time.perf_counter()
    sim = simulate(SimConfig.for_rows(rows, seed=seed))
    written = write_party_csvs(split_parties(sim), folder, gz=True)
    paths = {p.name.split(".")[0]: p for p in written}
    print(f"simulated {len(sim)} transactions in {time.perf_counter() - t0:.1f} s", flush=True)
    return {"issuer": "active", "acquirer": "passive"}, paths


def setup(args: argparse.Namespace) -> Setup:
    root = Path(tempfile.mkdtemp(prefix="bench_online_"))
    if args.party:
        roles, paths = {}, {}
        for spec in args.party:
            name, _, rest = spec.partition("=")
            path, _, role = rest.rpartition(":")
            roles[name], paths[name] = role, Path(path)
    elif args.data == "fraud":
        roles, paths = fraud_consortium(root / "data", args.rows, args.sim_seed)
    else:
        roles, paths = dict(ROLES), dict(DEMO)
    tables = read_consortium(paths, roles, args.label)
    ids = common_sample(tables, args.train_rows, seed=0)
    sgb = {"n_estimators": args.trees, "max_depth": args.depth, "max_bin": 32}
    lr = {"max_iter": 3, "batch_size": 1024}
    cache = Path(tempfile.gettempdir())
    parts = {
        "secureboost": _trained(
            "secureboost", tables, ids, sgb, roles, cache / "fedsilo_bench_online_sgb.json"
        ),
        "lr": _trained("lr", tables, ids, lr, roles, cache / "fedsilo_bench_online_lr.json"),
    }
    certs.init_ca(root / "certs", name="bench consortium")
    certs.issue(root / "certs", "coordinator", role="coordinator")
    certs.issue(root / "certs", "fraud-engine", role="silo")  # the bank's application
    for party in roles:
        certs.issue(root / "certs", party, role="silo")
    ports = {p: free_port() for p in roles}
    http_port = free_port()
    models = ["bench-sgb-v1", "bench-lr-v1"]
    for party in roles:
        _silo_toml(root, party, ports[party], tables[party].columns, args, roles, models, http_port)
        engine = create_engine(f"sqlite:///{root / (party + '.db')}")
        load_csv_into_table(engine, f"{party}_data", paths[party], args.id_column)
        engine.dispose()
    urls = {p: f"sqlite:///{root / (p + '.db')}" for p in roles}
    c = root / "certs"
    (root / "coordinator.toml").write_text(
        f'name = "coordinator"\ndatabase = "sqlite:///{root / "coord.db"}"\n'
        f'[tls]\nca = "{c / "ca.pem"}"\ncert = "{c / "coordinator.pem"}"\n'
        f'key = "{c / "coordinator.key"}"\n'
        + "".join(f'[silos.{p}]\naddress = "127.0.0.1:{port}"\n' for p, port in ports.items())
    )
    store = JobStore(load_coordinator_config(root / "coordinator.toml").database_url)
    registered = {}
    for kind, name, params in (("secureboost", "bench-sgb", sgb), ("lr", "bench-lr", lr)):
        install(urls, parts[kind], kind, f"bench-{kind}")
        registered[kind] = register(store, kind, f"bench-{kind}", name, params, roles)
    procs = {}
    fedsilo = [sys.executable, "-m", "fedsilo.cli.main"]
    for party in roles:
        procs[party] = _start(
            [*fedsilo, "silo", "serve", "--config", str(root / f"{party}.toml")], "serving on"
        )
    for kind, model in registered.items():
        procs[f"relay-{kind}"] = _start(
            [*fedsilo, "serve", model, "--config", str(root / "coordinator.toml")], "silos up"
        )
    return Setup(root, tables, roles, ports, http_port, registered, procs)


class Client:
    """One persistent HTTPS connection with the application's client certificate."""

    def __init__(self, s: Setup) -> None:
        c = s.root / "certs"
        ctx = ssl.create_default_context(cafile=str(c / "ca.pem"))
        ctx.load_cert_chain(str(c / "fraud-engine.pem"), str(c / "fraud-engine.key"))
        self.conn = http.client.HTTPSConnection("127.0.0.1", s.http_port, context=ctx, timeout=10)

    def score(self, model: str, ids: list[str]) -> dict[str, Any]:
        body = json.dumps({"transactions": [{"id": i} for i in ids]})
        self.conn.request(
            "POST", f"/v1/models/{model}/score", body, {"Content-Type": "application/json"}
        )
        resp = self.conn.getresponse()
        data = json.loads(resp.read())
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {data}")
        return data


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of ``pids`` and all their descendants, from /proc (Linux)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    wanted, total, grew = set(pids), 0.0, True
    while grew:
        grew = False
        for pid, (ppid, _) in stats.items():
            if ppid in wanted and pid not in wanted:
                wanted.add(pid)
                grew = True
    for pid in wanted:
        total += stats.get(pid, (0, 0.0))[1]
    return total


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000.0, q)) if values else float("nan")


def single(s: Setup, model: str, ids: list[str], rate: float, seconds: float) -> dict[str, float]:
    """Open loop: request k is due at start + k / rate; latency counts from its due time."""
    n = int(rate * seconds)
    workers = 4
    lat: list[float] = []
    errors = [0]
    start = time.perf_counter() + 0.2
    ERRORS.clear()

    def run(w: int) -> None:
        client = Client(s)
        for k in range(w, n, workers):
            due = start + k / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            try:
                client.score(model, [ids[k % len(ids)]])
            except Exception as err:
                ERRORS.append(str(err)[:200])
                errors[0] += 1
                client = Client(s)
                continue
            lat.append(time.perf_counter() - due)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(workers)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    return {"requests": n, "errors": errors[0], "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99)}


def sustained(
    s: Setup, model: str, ids: list[str], clients: int, batch: int, seconds: float, pids: list[int]
) -> dict[str, float]:
    lat: list[float] = []
    done = [0]
    errors = [0]
    ERRORS.clear()
    end = time.perf_counter() + seconds
    cpu0, t0 = cpu_seconds(pids), time.perf_counter()

    def run(w: int) -> None:
        client = Client(s)
        k = w * batch
        while time.perf_counter() < end:
            chunk = [ids[(k + j) % len(ids)] for j in range(batch)]
            k += clients * batch
            begin = time.perf_counter()
            try:
                client.score(model, chunk)
            except Exception as err:
                ERRORS.append(str(err)[:200])
                errors[0] += 1
                client = Client(s)
                continue
            lat.append(time.perf_counter() - begin)
            done[0] += batch

    threads = [threading.Thread(target=run, args=(w,)) for w in range(clients)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    wall, cpu = time.perf_counter() - t0, cpu_seconds(pids) - cpu0
    return {
        "tx_per_s": done[0] / wall,
        "p50_ms": pct(lat, 50),
        "p99_ms": pct(lat, 99),
        "errors": errors[0],
        "cpu_ms_per_1k": 1e6 * cpu / max(done[0], 1),
        "wall_ms_per_1k": 1e6 * wall / max(done[0], 1),
    }


def batch_cost(s: Setup, model: str, pids: list[int]) -> dict[str, float]:
    config = load_coordinator_config(s.root / "coordinator.toml")
    clients = connect_silos(config)
    store = JobStore(config.database_url)
    parties = {p: {"dataset": "main", "role": r} for p, r in s.roles.items()}

    def job(name: str, steps: list[dict[str, Any]]) -> tuple[float, float]:
        spec = parse_job_spec(
            {"name": name, "parties": parties, "steps": steps}, s.root / "job.toml"
        )
        cpu0, t0 = cpu_seconds(pids), time.perf_counter()
        record = run_job(spec, clients=clients, store=store)
        assert record.state == "succeeded", record.reason
        return time.perf_counter() - t0, cpu_seconds(pids) - cpu0

    if not (s.root / "aligned").exists():
        job("psi", [{"kind": "psi", "alignment": "bench-all"}])
        (s.root / "aligned").touch()
    table = f"batch_{model.replace('-', '_')}"
    wall, cpu = job(
        f"score-{model}",
        [
            {
                "kind": "score",
                "model": model,
                "alignment": "bench-all",
                "table": table,
                "chunk_rows": 10000,
            }
        ],
    )
    active = next(p for p, r in s.roles.items() if r == "active")
    engine = create_engine(f"sqlite:///{s.root / (active + '.db')}")
    with engine.connect() as conn:
        rows = int(conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar() or 0)
    engine.dispose()
    return {
        "rows": rows,
        "wall_ms_per_1k": 1e6 * wall / rows,
        "cpu_ms_per_1k": 1e6 * cpu / rows,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--party",
        action="append",
        default=[],
        metavar="NAME=CSV:ROLE",
        help="a silo's CSV and role (default: --data)",
    )
    ap.add_argument(
        "--data",
        choices=["fraud", "credit"],
        default="fraud",
        help="fraud: simulated card transactions (fedsilo.fraudsim, issuer + acquirer); "
        "credit: the bundled demo consortium (bank, bureau, lender)",
    )
    ap.add_argument("--rows", type=int, default=100_000, help="fraud: transactions to simulate")
    ap.add_argument("--sim-seed", type=int, default=0, help="fraud: seed of the simulation")
    ap.add_argument("--label", help="label column (default: the --data's)")
    ap.add_argument("--id-column", help="id column (default: the --data's)")
    ap.add_argument("--trees", type=int, default=100)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--train-rows", type=int, default=4000)
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--batch", type=int, default=50)
    args = ap.parse_args()
    fraud = args.data == "fraud" and not args.party
    args.label = args.label or (ISSUER_LABEL if fraud else LABEL)
    args.id_column = args.id_column or (TX_ID if fraud else ID)
    s = setup(args)
    try:
        pids = [p.pid for p in s.procs.values()]
        ids = common_sample(s.tables, 20000, seed=5)
        client = Client(s)
        for model in s.models.values():  # warm up: every index built, streams up
            for _ in range(50):
                client.score(model, ids[:5])
        out: dict[str, dict[str, Any]] = {}
        for kind, model in s.models.items():
            one = single(s, model, ids, args.rate, args.seconds)
            one["first_errors"] = sorted(set(ERRORS))[:3]  # type: ignore[assignment]
            load = sustained(s, model, ids, args.clients, args.batch, args.seconds, pids)
            load["first_errors"] = sorted(set(ERRORS))[:3]  # type: ignore[assignment]
            cost = batch_cost(s, model, pids)
            out[kind] = {"single": one, "sustained": load, "batch": cost}
        print(
            f"\nonline scoring, {len(s.roles)} silos, mTLS, loopback; SecureBoost {args.trees} "
            f"trees depth {args.depth}; {args.rate:.0f} req/s single, {args.clients} clients "
            f"x {args.batch} tx sustained ({args.seconds:.0f} s each)"
        )
        print(
            f"{'model':12} {'single p50':>11} {'p99':>7} {'tx/s':>8} {'load p50':>9} "
            f"{'p99':>7} {'online cpu':>11} {'batch cpu':>10} {'batch wall':>11}  (per score)"
        )
        for kind, r in out.items():
            one, load, cost = r["single"], r["sustained"], r["batch"]
            print(
                f"{kind:12} {one['p50_ms']:9.1f}ms {one['p99_ms']:5.1f}ms "
                f"{load['tx_per_s']:8.0f} {load['p50_ms']:7.1f}ms {load['p99_ms']:5.1f}ms "
                f"{load['cpu_ms_per_1k']:9.0f}us {cost['cpu_ms_per_1k']:8.0f}us "
                f"{cost['wall_ms_per_1k']:9.0f}us"
            )
            print(
                f"{'':12} errors: single {one['errors']}, sustained {load['errors']}; "
                f"batch scored {cost['rows']} rows; targets p50<={TARGETS['p50_single_ms']:.0f} "
                f"p99<={TARGETS['p99_single_ms']:.0f} ms, >={TARGETS['tx_per_s']:.0f} tx/s "
                f"p99<={TARGETS['p99_load_ms']:.0f} ms"
            )
            for what in ("single", "sustained"):
                for line in r[what]["first_errors"]:
                    print(f"{'':12} {what} error: {line}")
    finally:
        for proc in s.procs.values():
            _stop(proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
