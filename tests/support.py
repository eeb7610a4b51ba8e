"""Helpers for tests that run real silo nodes and a coordinator on loopback.

``Consortium`` writes silo configs for CSV-backed datasets into a temporary folder, starts each
silo's gRPC server in this process, and gives a coordinator config plus clients. Databases are
SQLite files unless a test passes a PostgreSQL URL for a party (``pg_url`` fixture).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine

from fedsilo.coordinator.client import SiloClient
from fedsilo.coordinator.config import CoordinatorConfig, JobSpec, parse_job_spec
from fedsilo.coordinator.connect import connect_silos
from fedsilo.coordinator.store import JobStore
from fedsilo.silo_node.demo_data import load_csv_into_table
from fedsilo.silo_node.node import SiloNode, start_silo

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
ALL_PROTOCOLS = '["psi", "secureboost", "lr", "hlr", "hxgb", "score"]'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def toml_list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{x}"' for x in items) + "]"


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
            f"[tls]\ninsecure_plaintext = true\n{datasets}"
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
            f"[tls]\ninsecure_plaintext = true\n{silos}"
        )
        from fedsilo.coordinator.config import load_coordinator_config

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
