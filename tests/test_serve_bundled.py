"""Issue 2's picture, through the real commands: two `fedsilo silo serve` processes on the
bundled demo data, one on SQLite and one on PostgreSQL, and the coordinator reaching both."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from support import free_port, toml_list

from fedsilo.silo_node.demo_data import DEMO_PARTIES

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _config(tmp_path: Path, party: str, database: str) -> Path:
    table, label, features = DEMO_PARTIES[party]
    path = tmp_path / f"{party}.toml"
    label_line = f'label = "{label}"\n' if label else ""
    path.write_text(
        f'party = "{party}"\nlisten = "127.0.0.1:{free_port()}"\ndatabase = "{database}"\n'
        "[tls]\ninsecure_plaintext = true\n"
        f'[datasets.customers]\ntable = "{table}"\nid_column = "customer_id"\n'
        f"features = {toml_list(list(features))}\n{label_line}"
        '[policy]\nprotocols = ["psi"]\nroles = ["active", "passive"]\n'
    )
    return path


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fedsilo.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_two_silos_serve_bundled_data_and_the_coordinator_describes_them(
    tmp_path: Path, pg_url: str
) -> None:
    configs = {
        "bank": _config(tmp_path, "bank", f"sqlite:///{tmp_path / 'bank.db'}"),
        "bureau": _config(tmp_path, "bureau", pg_url),
    }
    for party, config in configs.items():
        loaded = _cli("silo", "load-csv", f"demo:{party}", "--config", str(config))
        assert loaded.returncode == 0, loaded.stderr
    procs = {
        p: subprocess.Popen(
            [sys.executable, "-m", "fedsilo.cli.main", "silo", "serve", "--config", str(c)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ},
        )
        for p, c in configs.items()
    }
    try:
        addresses = {}
        for party, config in configs.items():
            addresses[party] = next(
                line.split('"')[1]
                for line in config.read_text().splitlines()
                if line.startswith("listen")
            )
            with grpc.insecure_channel(addresses[party]) as channel:
                grpc.channel_ready_future(channel).result(timeout=60)
        coordinator = tmp_path / "coordinator.toml"
        coordinator.write_text(
            "[tls]\ninsecure_plaintext = true\n"
            + "".join(f'[silos.{p}]\naddress = "{a}"\n' for p, a in addresses.items())
        )
        described = _cli("silo", "describe", "--json", "--config", str(coordinator))
        assert described.returncode == 0, described.stderr
        silos = {s["party"]: s for s in json.loads(described.stdout)["silos"]}
        assert {p: s["health"] for p, s in silos.items()} == {
            "bank": "SERVING",
            "bureau": "SERVING",
        }
        got = {
            p: [(d["name"], d["rows"], len(d["features"]), d["label"]) for d in s["datasets"]]
            for p, s in silos.items()
        }
        assert got == {
            "bank": [("customers", 28200, 6, "default")],
            "bureau": [("customers", 28500, 8, None)],
        }
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(timeout=30)
