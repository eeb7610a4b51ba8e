"""What a silo's log tells an operator: one line per job opened and closed, per step served (with
its duration and bytes) and per request refused (with the caller and the reason), in text or
JSON lines, from real ``fedsilo silo serve`` processes under mTLS. Never an id, a feature value
or a key: the test searches the log for every id and feature value of the silos' tables.
"""

from __future__ import annotations

import json
import logging
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import Consortium, SiloSpec

from fedsilo.coordinator.config import load_coordinator_config
from fedsilo.coordinator.connect import connect_silos
from fedsilo.coordinator.orchestrator import run_job
from fedsilo.coordinator.store import JobStore
from fedsilo.errors import NotFound
from fedsilo.logs import JsonFormatter, clean, event, where_raised
from fedsilo.wire import StepPayload

pytestmark = pytest.mark.e2e


def _tables(root: Path) -> tuple[Path, Path, list[str], list[str]]:
    """Two small tables with ids and values that cannot turn up in a log by chance."""
    rng = random.Random(14)
    ids = [f"CUST{rng.getrandbits(48):012x}" for _ in range(300)]
    values = [f"{rng.uniform(1000, 9999):.6f}" for _ in range(1000)]
    bank, bureau = root / "bank.csv", root / "bureau.csv"
    bank.write_text(
        "id,y,f0,f1\n"
        + "".join(f"{i},{k % 2},{values[k]},{values[k + 250]}\n" for k, i in enumerate(ids[:250]))
    )
    bureau.write_text(
        "id,g0,g1\n"
        + "".join(f"{i},{values[500 + k]},{values[750 + k]}\n" for k, i in enumerate(ids[50:300]))
    )
    return bank, bureau, ids, values


def _start(config: Path, log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "fedsilo.cli.main", *args, "silo", "serve"]
            + ["--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Consortium, dict[str, Path], Path, list[str]]]:
    bank_csv, bureau_csv, ids, values = _tables(tmp_path)
    c = Consortium(tmp_path, tls=True)
    c.add_silo(SiloSpec("bank", bank_csv, ["f0", "f1"], label="y"))
    c.add_silo(SiloSpec("bureau", bureau_csv, ["g0", "g1"]))
    logs = {"bank": tmp_path / "bank.log", "bureau": tmp_path / "bureau.log"}
    procs = [
        _start(c.configs["bank"], logs["bank"], "--log-format", "json"),
        _start(c.configs["bureau"], logs["bureau"]),  # text lines, level info for serve
    ]
    coordinator = tmp_path / "coordinator.toml"
    silos = ""
    for party, config in c.configs.items():
        listen = next(line for line in config.read_text().splitlines() if line.startswith("listen"))
        silos += f"[silos.{party}]\naddress = {listen.split('=', 1)[1].strip()}\n"
    coordinator.write_text(
        f'name = "coordinator"\ndatabase = "sqlite:///{tmp_path / "coord.db"}"\n'
        f"{c._tls_section('coordinator', silo=False)}{silos}"
    )
    try:
        yield c, logs, coordinator, ids + values
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)


def _ready(coordinator: Path) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        clients = connect_silos(load_coordinator_config(coordinator))
        try:
            for client in clients.values():
                client.health()
            return clients
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_a_silo_logs_each_job_step_and_refusal_and_no_data(
    served: tuple[Consortium, dict[str, Path], Path, list[str]],
) -> None:
    c, logs, coordinator, secrets = served
    clients = _ready(coordinator)
    store = JobStore(load_coordinator_config(coordinator).database_url)
    parties = {"bank": "active", "bureau": "passive"}
    jobs = [c.job(parties, [{"kind": "psi", "alignment": "a", "replace": True}], name="psi")]
    jobs += [c.job(parties, [{"kind": "noop"}], name=f"noop{i}") for i in range(5)]
    job_ids = [run_job(spec, clients=clients, store=store).job_id for spec in jobs]
    with pytest.raises(NotFound, match="not open"):  # a step for a job the silo never opened
        clients["bank"].step("never-opened", "job.echo", 1, StepPayload(meta={"step": 0}))
    time.sleep(0.5)
    for proc_log in logs.values():
        assert proc_log.stat().st_size > 0

    records = [json.loads(line) for line in logs["bank"].read_text().splitlines()]
    by_event: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        assert {"ts", "level", "logger", "message"} <= set(r)
        by_event.setdefault(r.get("event", ""), []).append(r)
    opened, closed = by_event["job opened"], by_event["job closed"]
    assert [r["job"] for r in opened] == job_ids and [r["job"] for r in closed] == job_ids
    assert all(r["silo"] == "bank" and r["caller"] == "'coordinator' (mTLS)" for r in opened)
    assert {r["role"] for r in opened} == {"active"} and {r["dataset"] for r in opened} == {"main"}
    assert all(r["failed"] is False and r["level"] == "info" for r in closed)
    served_steps = by_event["step served"]
    assert {r["job"] for r in served_steps} == set(job_ids)
    methods = {r["method"] for r in served_steps}
    assert {"psi.start", "psi.pump", "psi.finish", "psi.commit", "job.echo"} <= methods
    for r in served_steps:
        assert isinstance(r["ms"], float) and r["ms"] >= 0 and r["step"] == 0
        assert isinstance(r["bytes_in"], int) and isinstance(r["bytes_out"], int)
    assert sum(r["bytes_out"] for r in served_steps if r["method"] == "psi.pump") > 250 * 16
    (refused,) = by_event["request refused"]
    assert refused["level"] == "warning" and refused["method"] == "Step job.echo"
    assert refused["caller"] == "'coordinator' (mTLS)" and "not open" in refused["reason"]

    text = logs["bureau"].read_text()
    assert text.count("job opened: ") == 6 and text.count("job closed: ") == 6
    assert "step served: silo=bureau" in text and " ms=" in text and " bytes_in=" in text
    for log in logs.values():  # no id or feature value of either silo's table
        body = log.read_text()
        leaked = [s for s in secrets if s in body]
        assert not leaked, leaked[:3]


def test_json_formatter_and_clean_keep_one_line_per_record() -> None:
    log = logging.getLogger("fedsilo.test_logs")
    handler = logging.Handler()
    seen: list[str] = []
    handler.emit = lambda record: seen.append(JsonFormatter().format(record))  # type: ignore[method-assign]
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        event(log, "job opened", job=clean("evil\njob\x1b[31m" + "x" * 400), n=3)
    finally:
        log.removeHandler(handler)
    (line,) = seen
    assert "\n" not in line
    doc = json.loads(line)
    assert doc["event"] == "job opened" and doc["n"] == 3 and doc["level"] == "info"
    assert doc["job"].startswith("evil\\njob\\x1b") and len(doc["job"]) <= 300


def test_where_raised_names_the_place_not_the_message() -> None:
    def lookup(table: dict[str, int]) -> int:
        return table["CUST0123456789ab"]

    try:
        lookup({})
    except KeyError as exc:
        text = where_raised(exc)
    assert "CUST0123456789ab" not in text
    assert "in lookup" in text and text.endswith("KeyError") and "test_silo_logs.py" in text
