"""Docker cannot run here: check the compose file against the project instead.

Every fedsilo command it runs must parse with the real CLI, every config file it mounts must
exist and load, every port must match the config that listens on it, and the coordinator's silo
addresses must name services of the file.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import yaml

from fedsilo.cli.main import build_parser
from fedsilo.coordinator.config import load_coordinator_config
from fedsilo.silo_node.config import load_silo_config

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"


def compose() -> dict[str, Any]:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def fedsilo_commands(service: dict[str, Any]) -> list[list[str]]:
    """The fedsilo argument lists a service runs (command, or an sh -c entrypoint)."""
    if "entrypoint" in service:
        script = service["entrypoint"][-1]
        parts = [shlex.split(p.strip()) for p in script.replace("&&", ";").split(";")]
        return [p[2:] if p[0] == "exec" else p[1:] for p in parts if "fedsilo" in p[:2]]
    return [service["command"]] if "command" in service else []


def mounts(service: dict[str, Any]) -> dict[str, Path]:
    out = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            out[target] = DOCKER / source[2:]
    return out


def test_dockerfile_installs_the_package_and_entrypoint() -> None:
    lines = (DOCKER / "Dockerfile").read_text().splitlines()
    assert 'ENTRYPOINT ["fedsilo"]' in lines
    copied = [word for line in lines if line.startswith("COPY ") for word in line.split()[1:-1]]
    assert {"pyproject.toml", "README.md", "fedsilo"} <= set(copied)
    assert all((ROOT / c).exists() for c in copied)


def test_every_command_parses_and_every_config_exists(tmp_path: Path) -> None:
    services = compose()["services"]
    parser = build_parser()
    seen_configs = 0
    for name, service in services.items():
        if name == "postgres":
            continue
        commands = fedsilo_commands(service)
        assert commands, f"service {name} runs no fedsilo command"
        for argv in commands:
            args = parser.parse_args(argv)
            config = getattr(args, "config", None)
            if config is None:
                continue
            mounted = mounts(service)
            assert str(config) in mounted, f"{name}: {config} is not mounted"
            assert mounted[str(config)].is_file(), f"{name}: {mounted[str(config)]} missing"
            seen_configs += 1
    assert seen_configs >= 4


def _with_certs(config: Path, tmp_path: Path) -> Path:
    """Copy a config beside dummy certificate files so it loads (certs are made at deploy time)."""
    (tmp_path / "certs").mkdir(exist_ok=True)
    for f in (
        "ca.pem",
        "coordinator.pem",
        "coordinator.key",
        "bank.pem",
        "bank.key",
        "bureau.pem",
        "bureau.key",
        "lender.pem",
        "lender.key",
    ):
        (tmp_path / "certs" / f).write_text("placeholder")
    copy = tmp_path / config.name
    copy.write_text(config.read_text())
    return copy


def test_ports_and_addresses_agree(tmp_path: Path) -> None:
    services = compose()["services"]
    coordinator = load_coordinator_config(
        _with_certs(DOCKER / "config" / "coordinator.toml", tmp_path)
    )
    assert coordinator.listen.endswith(":50050")
    assert "50050:50050" in services["coordinator"]["ports"]
    for party, address in coordinator.silos.items():
        host, port = address.rsplit(":", 1)
        assert host == party and party in services, f"{party}: no service named {host}"
        silo = load_silo_config(_with_certs(DOCKER / "config" / f"{party}.toml", tmp_path))
        assert silo.party == party and silo.listen.endswith(f":{port}")
        assert port in [str(p) for p in services[party]["expose"]]
        key_mount = f"/etc/fedsilo/certs/{party}.key"
        assert key_mount in mounts(services[party]), f"{party} does not mount its own key"
        others = [m for m in mounts(services[party]) if m.endswith(".key") and m != key_mount]
        assert not others, f"{party} mounts another party's key: {others}"


def test_one_silo_uses_postgres_the_others_sqlite(tmp_path: Path) -> None:
    urls = {
        p: load_silo_config(_with_certs(DOCKER / "config" / f"{p}.toml", tmp_path)).database_url
        for p in ("bank", "bureau", "lender")
    }
    assert urls["bank"].startswith("postgresql")
    assert urls["bureau"].startswith("sqlite") and urls["lender"].startswith("sqlite")
    assert "postgres" in compose()["services"]["bank"]["depends_on"]


def test_job_file_parses(tmp_path: Path) -> None:
    from fedsilo.coordinator.config import load_job_spec
    from fedsilo.coordinator.drivers import driver_kinds

    _with_certs(DOCKER / "config" / "coordinator.toml", tmp_path)
    job = _with_certs(DOCKER / "config" / "job.toml", tmp_path)
    spec = load_job_spec(job)
    assert set(spec.parties) == {"bank", "bureau", "lender"}
    assert {s["kind"] for s in spec.steps} <= set(driver_kinds())
