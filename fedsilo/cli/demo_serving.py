"""The fraud demo's serving phase: the trained model answered online, checked against batch.

After ``FraudDemo.train`` the coordinator prepares the model for serving (the ``serve`` job:
issuer and acquirer agree the pseudonym and serving keys; docs/serving.md), a ``fedsilo serve``
process relays between them, and the issuer's HTTPS endpoint (mTLS: the demo's "fraud engine"
certificate) answers. :func:`check_online` then scores held-out transactions through it, as the
issuer's fraud engine would: single requests one after another, then a burst of concurrent
small requests the endpoint micro-batches, and compares every online score with the score the
``score`` step wrote for the same id.

The silo configs the demo writes already list the model in ``serve_models``: its registry id is
known before training (the job names the model, and the demo's folder starts empty), so the
policy is in place when the silos start, with nothing to reload.
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import create_engine, text

from fedsilo.cli.launch import launch_relay
from fedsilo.coordinator.config import load_coordinator_config
from fedsilo.coordinator.connect import connect_silos
from fedsilo.coordinator.serving import prepare_serving
from fedsilo.coordinator.store import JobRecord, JobStore
from fedsilo.errors import FedsiloError, JobError
from fedsilo.silo_node.store import SiloStore

__all__ = [
    "APP",
    "MODEL_ID",
    "MODEL_NAME",
    "OnlineCheck",
    "check_online",
    "serving_section",
    "served",
    "try_lines",
]

#: the name the demo's job gives the model; in a fresh demo folder its registry id is ``-v1``
MODEL_NAME = "fraud-secureboost"
MODEL_ID = f"{MODEL_NAME}-v1"
#: the issuer's application that asks for scores (its client certificate is in certs/apps/, of
#: the applications' CA there: the endpoint trusts it, the silos' gRPC servers do not)
APP = "fraud-engine"
#: single requests sent one after another
SINGLE_REQUESTS = 200
#: the burst: this many clients at once, each posting requests of BURST_ROWS transactions
BURST_CLIENTS, BURST_REQUESTS, BURST_ROWS = 8, 25, 10
#: the deadline the demo asks for: generous, so a loaded laptop answers rather than fails
#: (the endpoint's default is SERVING_DEADLINE_MS; the latencies printed are what was measured)
DEADLINE_MS = 2000


def serving_section(port: int) -> str:
    """The issuer's ``[serving]`` section: HTTPS on loopback with the issuer's consortium
    certificate; callers need a certificate of the applications' CA (``certs/apps/``)."""
    return (
        f'\n[serving]\nlisten = "127.0.0.1:{port}"\nca = "certs/apps/ca.pem"\n'
        'cert = "certs/issuer.pem"\nkey = "certs/issuer.key"\n'
    )


def _tls_files(workdir: Path) -> tuple[Path, Path, Path]:
    """The consortium CA (to check the endpoint) and the application's certificate and key."""
    apps = workdir / "certs" / "apps"
    return workdir / "certs" / "ca.pem", apps / f"{APP}.pem", apps / f"{APP}.key"


class _Connection:
    """One persistent HTTPS connection with the application's client certificate."""

    def __init__(self, workdir: Path, port: int) -> None:
        ca, cert, key = _tls_files(workdir)
        ctx = ssl.create_default_context(cafile=str(ca))
        ctx.load_cert_chain(str(cert), str(key))
        self.conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)

    def score(self, ids: list[str]) -> dict[str, Any]:
        body = json.dumps({"transactions": [{"id": i} for i in ids], "deadline_ms": DEADLINE_MS})
        headers = {"Content-Type": "application/json"}
        self.conn.request("POST", f"/v1/models/{MODEL_ID}/score", body, headers)
        resp = self.conn.getresponse()
        answer: dict[str, Any] = json.loads(resp.read())
        if resp.status != 200:
            raise JobError(f"scoring endpoint: HTTP {resp.status}: {answer.get('error', answer)}")
        return answer

    def close(self) -> None:
        self.conn.close()


@dataclass
class OnlineCheck:
    """What the serving phase measured and found."""

    single: dict[str, float]
    burst: dict[str, float]
    compared: int
    max_abs_diff: float
    degraded: int
    errors: list[str]
    sample_id: str
    port: int
    #: wall time of the serving phase: the serve job, the relay's start, the scoring
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "model": MODEL_ID,
            "single": self.single,
            "burst": self.burst,
            "compared": self.compared,
            "max_abs_diff": self.max_abs_diff,
            "degraded": self.degraded,
            "errors": self.errors[:5],
            "url": f"https://127.0.0.1:{self.port}",
            "seconds": round(self.seconds, 2),
        }


@contextmanager
def served(workdir: Path, record: JobRecord, logs: Path) -> Iterator[float]:
    """Prepare the trained model for serving and run the relay; yields when the phase began
    (``time.perf_counter``)."""
    consortium = load_coordinator_config(workdir / "coordinator.toml")
    store = JobStore(consortium.database_url)
    registered = [v.get("model") for k, v in record.result.items() if k.endswith(":secureboost")]
    if registered != [MODEL_ID]:
        raise JobError(
            f"the demo's job registered {registered}, not '{MODEL_ID}' (listed in the silos' "
            "serve_models): run the demo in an empty folder"
        )
    started = time.perf_counter()
    serving_id, _active = prepare_serving(
        MODEL_ID, clients=connect_silos(consortium), store=store, on_party_down="fail"
    )
    with launch_relay(MODEL_ID, serving_id, workdir / "coordinator.toml", logs=logs):
        yield started


def _held_out(issuer_db: Path, alignment: str, table: str) -> tuple[list[str], dict[str, float]]:
    """The issuer's held-out ids (its test split) and the batch scores the ``score`` step wrote
    (this demo runs the issuer's silo here; both are in its database)."""
    engine = create_engine(f"sqlite:///{issuer_db}")
    try:
        ids = [i for part in SiloStore(engine).iter_alignment_ids(alignment) for i in part]
        with engine.connect() as conn:
            rows = conn.execute(text(f'SELECT id, score FROM "{table}"')).all()
    finally:
        engine.dispose()
    batch: dict[str, float] = {}
    for row_id, score in rows:
        if row_id in batch:
            raise JobError(f"table '{table}' holds more than one score for an id")
        batch[str(row_id)] = float(score)
    return ids, batch


def _ms(values: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(values) * 1000.0, q)), 2) if values else 0.0


def check_online(
    workdir: Path, port: int, *, alignment: str, table: str, seed: int = 0
) -> OnlineCheck:
    """Score a sample of held-out transactions online; compare with the batch scores."""
    ids, batch = _held_out(workdir / "issuer.db", alignment, table)
    if not ids:
        raise JobError(f"alignment '{alignment}' at the issuer is empty: nothing to score")
    rng = np.random.default_rng(seed)
    wanted = SINGLE_REQUESTS + BURST_CLIENTS * BURST_REQUESTS * BURST_ROWS
    sample = [ids[int(k)] for k in rng.choice(len(ids), wanted, replace=len(ids) < wanted)]
    singles, rest = sample[:SINGLE_REQUESTS], sample[SINGLE_REQUESTS:]
    online: dict[str, float] = {}
    errors: list[str] = []
    degraded = [0]
    lock = threading.Lock()

    def record(answer: dict[str, Any]) -> None:
        with lock:
            degraded[0] += bool(answer.get("degraded"))
            for result in answer["results"]:
                online[str(result["id"])] = float(result["score"])

    first = _Connection(workdir, port)
    try:
        first.score(singles[:5])  # warm up: the connection, the endpoint's index
        single_lat: list[float] = []
        t0 = time.perf_counter()
        for tx in singles:
            begin = time.perf_counter()
            try:
                record(first.score([tx]))
            except (FedsiloError, OSError, http.client.HTTPException) as err:
                errors.append(str(err)[:200])
                first.close()
                first = _Connection(workdir, port)
                continue
            single_lat.append(time.perf_counter() - begin)
        single_wall = time.perf_counter() - t0
    finally:
        first.close()

    burst_lat: list[float] = []

    def client(w: int) -> None:
        conn = _Connection(workdir, port)
        try:
            for r in range(BURST_REQUESTS):
                start = (w * BURST_REQUESTS + r) * BURST_ROWS
                begin = time.perf_counter()
                try:
                    answer = conn.score(rest[start : start + BURST_ROWS])
                except (FedsiloError, OSError, http.client.HTTPException) as err:
                    with lock:
                        errors.append(str(err)[:200])
                    conn.close()
                    conn = _Connection(workdir, port)
                    continue
                elapsed = time.perf_counter() - begin
                record(answer)
                with lock:
                    burst_lat.append(elapsed)
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(w,)) for w in range(BURST_CLIENTS)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    burst_wall = time.perf_counter() - t0

    missing = [i for i in online if i not in batch]
    if missing:
        raise JobError(f"transaction '{missing[0]}' was scored online but not by the score step")
    diffs = [abs(online[i] - batch[i]) for i in online]
    return OnlineCheck(
        single={
            "requests": len(single_lat),
            "p50_ms": _ms(single_lat, 50),
            "p99_ms": _ms(single_lat, 99),
            "per_s": round(len(single_lat) / single_wall, 1),
        },
        burst={
            "requests": len(burst_lat),
            "transactions": len(burst_lat) * BURST_ROWS,
            "clients": BURST_CLIENTS,
            "p50_ms": _ms(burst_lat, 50),
            "p99_ms": _ms(burst_lat, 99),
            "tx_per_s": round(len(burst_lat) * BURST_ROWS / burst_wall, 1),
        },
        compared=len(diffs),
        max_abs_diff=max(diffs, default=float("nan")),
        degraded=degraded[0],
        errors=errors,
        sample_id=singles[0],
        port=port,
    )


def try_lines(workdir: Path, check: OnlineCheck) -> list[str]:
    """A ``curl`` and a ``fedsilo score-one`` line that score one held-out transaction."""
    ca, cert, key = _tls_files(workdir)
    url = f"https://127.0.0.1:{check.port}"
    return [
        f"curl --cacert {ca} --cert {cert} --key {key} -H 'Content-Type: application/json' "
        f'-d \'{{"id": "{check.sample_id}"}}\' {url}/v1/models/{MODEL_ID}/score',
        f"fedsilo score-one {MODEL_ID} {check.sample_id} --url {url} "
        f"--ca {ca} --cert {cert} --key {key}",
    ]
