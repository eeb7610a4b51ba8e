"""Helpers for tests that run real silo nodes and a coordinator on loopback.

``Consortium`` writes silo configs for CSV-backed datasets into a temporary folder, starts each
silo's gRPC server in this process, and gives a coordinator config plus clients. ``Silos`` runs
them as subprocesses instead (``fedsilo silo serve``), for tests that kill one for real;
``breast_silos`` is the three-silo breast consortium those tests share. Databases are
SQLite files unless a test passes a PostgreSQL URL for a party (``pg_url`` fixture).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from bundled_data import data_file
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from fedsilo import settings
from fedsilo.coordinator.client import SiloClient
from fedsilo.coordinator.config import (
    CoordinatorConfig,
    JobSpec,
    load_coordinator_config,
    parse_job_spec,
)
from fedsilo.coordinator.connect import connect_silos
from fedsilo.coordinator.store import JobStore
from fedsilo.crypto import certs
from fedsilo.protocols import KNOWN_PROTOCOLS
from fedsilo.silo_node.demo_data import load_csv_into_table
from fedsilo.silo_node.node import SiloNode, start_silo


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def toml_list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{x}"' for x in items) + "]"


#: every protocol a policy may allow (derived from the registry, as the silos' vocabulary is)
ALL_PROTOCOLS = toml_list(sorted(KNOWN_PROTOCOLS))


@dataclass
class SiloSpec:
    party: str
    csv: Path
    features: list[str]
    label: str | None = None
    db_url: str | None = None
    table: str | None = None
    id_column: str = "id"
    policy: str = ""
    #: more datasets with the same columns, ``{name: csv}`` (e.g. a held-out test set); each is
    #: loaded into table ``<table>_<name>`` and declared as ``[datasets.<name>]``
    extra: dict[str, Path] = field(default_factory=dict)


@dataclass
class Consortium:
    root: Path
    nodes: dict[str, SiloNode] = field(default_factory=dict)
    configs: dict[str, Path] = field(default_factory=dict)
    #: mTLS with a fresh consortium CA (silo-role certificates per party, a coordinator-role
    #: one for "coordinator") instead of plaintext
    tls: bool = False

    def _tls_section(self, party: str, *, silo: bool) -> str:
        """The ``[tls]`` table of a config: plaintext, or this consortium's certificates."""
        if not self.tls:
            return "[tls]\ninsecure_plaintext = true\n"
        folder = self.root / "certs"
        if not (folder / "ca.pem").exists():
            certs.init_ca(folder, name="test consortium")
            certs.issue(folder, "coordinator", role="coordinator")
        if not (folder / f"{party}.pem").exists():
            certs.issue(folder, party, role="silo" if silo else "coordinator")
        coordinator = 'coordinator = "coordinator"\n' if silo else ""
        return (
            f'[tls]\nca = "{folder / "ca.pem"}"\ncert = "{folder / f"{party}.pem"}"\n'
            f'key = "{folder / f"{party}.key"}"\n{coordinator}'
        )

    def add_silo(self, spec: SiloSpec, *, load: bool = True) -> Path:
        """Load the CSV into the silo's database and write its TOML; returns the config path."""
        table = spec.table or f"{spec.party}_data"
        db_url = spec.db_url or f"sqlite:///{self.root / (spec.party + '.db')}"
        tables = {"main": (table, spec.csv)}
        tables |= {name: (f"{table}_{name}", csv) for name, csv in spec.extra.items()}
        if load:
            engine = create_engine(db_url)
            for tbl, csv in tables.values():
                load_csv_into_table(engine, tbl, csv, spec.id_column)
            engine.dispose()
        label = f'label = "{spec.label}"\n' if spec.label else ""
        datasets = "".join(
            f'[datasets.{name}]\ntable = "{tbl}"\nid_column = "{spec.id_column}"\n'
            f"features = {toml_list(spec.features)}\n{label}"
            for name, (tbl, _) in tables.items()
        )
        text = (
            f'party = "{spec.party}"\nlisten = "127.0.0.1:{free_port()}"\ndatabase = "{db_url}"\n'
            f"{self._tls_section(spec.party, silo=True)}{datasets}"
            f'[policy]\nprotocols = {ALL_PROTOCOLS}\nroles = ["active", "passive", "member"]\n'
            f"{spec.policy}"
        )
        path = self.root / f"{spec.party}.toml"
        path.write_text(text)
        self.configs[spec.party] = path
        return path

    def start(self, party: str) -> SiloNode:
        node = start_silo(self.configs[party])
        self.nodes[party] = node
        return node

    def start_all(self) -> None:
        for party in self.configs:
            self.start(party)

    def stop(self, party: str) -> None:
        self.nodes.pop(party).stop(grace=None)

    def stop_all(self) -> None:
        for party in list(self.nodes):
            self.stop(party)

    def coordinator_config(self) -> CoordinatorConfig:
        path = self.root / "coordinator.toml"
        silos = "".join(f'[silos.{p}]\naddress = "{n.address}"\n' for p, n in self.nodes.items())
        path.write_text(
            f'name = "coordinator"\ndatabase = "sqlite:///{self.root / "coord.db"}"\n'
            f"{self._tls_section('coordinator', silo=False)}{silos}"
        )

        return load_coordinator_config(path)

    def clients(self) -> dict[str, SiloClient]:
        return connect_silos(self.coordinator_config())

    def store(self) -> JobStore:
        return JobStore(self.coordinator_config().database_url)

    def job(self, parties: dict[str, str], steps: list[dict[str, Any]], name: str = "t") -> JobSpec:
        """A job spec: ``parties`` maps party to role; every party uses its dataset ``main``."""
        raw = {
            "name": name,
            "parties": {p: {"dataset": "main", "role": r} for p, r in parties.items()},
            "steps": steps,
        }
        return parse_job_spec(raw, self.root / "job.toml")


GUEST = [f"x{i}" for i in range(10)]
HOST = [f"x{i}" for i in range(20)]
#: the breast consortium: bank holds labels and 10 columns, bureau and telco 10 columns each
PARTIES = {"bank": "active", "bureau": "passive", "telco": "passive"}


def breast_silos(root: Path) -> Silos:
    """Configs and databases of the breast consortium (not started)."""
    c = Consortium(root)
    c.add_silo(SiloSpec("bank", data_file("breast_hetero_guest"), GUEST, label="y"))
    c.add_silo(SiloSpec("bureau", data_file("breast_hetero_host"), HOST[:10]))
    c.add_silo(SiloSpec("telco", data_file("breast_hetero_host"), HOST[10:]))
    return Silos(c)


@dataclass
class Silos:
    """Silo subprocesses of one consortium, by party."""

    c: Consortium
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def address(self, party: str) -> str:
        text = self.c.configs[party].read_text()
        found = re.search(r'^listen = "([^"]+)"', text, re.M)
        assert found, text
        return found.group(1)

    def start(self, party: str) -> None:
        log = self.c.root / f"{party}.log"
        with log.open("ab") as out:
            self.procs[party] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "fedsilo.cli.main",
                    "silo",
                    "serve",
                    "--config",
                    str(self.c.configs[party]),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ},
            )
        with grpc.insecure_channel(self.address(party)) as channel:
            try:
                grpc.channel_ready_future(channel).result(timeout=60)
            except grpc.FutureTimeoutError:
                self.procs[party].kill()
                pytest.fail(f"silo {party} did not start:\n{log.read_text()}")

    def signal(self, party: str, sig: signal.Signals) -> None:
        self.procs[party].send_signal(sig)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
                proc.wait(timeout=10)

    def coordinator_toml(self) -> Path:
        path = self.c.root / "coordinator.toml"
        silos = "".join(f'[silos.{p}]\naddress = "{self.address(p)}"\n' for p in self.c.configs)
        path.write_text(
            f'name = "coordinator"\ndatabase = "sqlite:///{self.c.root / "coord.db"}"\n'
            f"[tls]\ninsecure_plaintext = true\n{silos}"
        )
        return path

    def clients(self) -> dict[str, SiloClient]:
        """Clients whose channels are connected: a restarted silo may take a reconnect backoff
        (at most ``GRPC_MAX_RECONNECT_BACKOFF_S``) to be reachable again."""
        clients = connect_silos(load_coordinator_config(self.coordinator_toml()))
        for client in clients.values():
            grpc.channel_ready_future(client.channel).result(
                timeout=settings.GRPC_MAX_RECONNECT_BACKOFF_S + 10
            )
        return clients

    def store(self) -> JobStore:
        return JobStore(load_coordinator_config(self.coordinator_toml()).database_url)

    def verify_ledger(self, party: str) -> None:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "fedsilo.cli.main",
                "audit",
                "verify",
                "--silo",
                str(self.c.configs[party]),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stdout + out.stderr


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``fedsilo ARGS`` in a fresh interpreter, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "fedsilo.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_for(what: str, check: Callable[[], bool], timeout: float = 120.0) -> None:
    """Poll ``check`` every 50 ms until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


@contextmanager
def pg_schema(server: str, prefix: str) -> Iterator[str]:
    """A PostgreSQL URL confined to a fresh schema ``<prefix>_<hex>`` (its search_path),
    dropped afterwards (waiting at most 10 s for locks: dispose engines made from it first)."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(server).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text("SET LOCAL lock_timeout = '10s'"))
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
