"""Docker cannot run here: check the compose file against the project instead.

Every fedsilo command it runs (health checks included) must parse with the real CLI, every
config file it mounts must exist and load, every port must match the config that listens on
it, and the coordinator's silo addresses must name services of the file. (tests/
test_compose_run.py runs the services themselves.)
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from fedsilo.cli.main import build_parser
from fedsilo.coordinator.config import load_coordinator_config
from fedsilo.silo_node.config import load_silo_config

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"


def compose() -> dict[str, Any]:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


#: services that run no fedsilo command of their own
NOT_FEDSILO = {"postgres", "keys"}


def fedsilo_commands(service: dict[str, Any]) -> list[list[str]]:
    """The fedsilo argument lists a service runs (command, or an sh -c entrypoint), and its
    health check."""
    out = []
    if "entrypoint" in service:
        script = service["entrypoint"][-1]
        parts = [shlex.split(p.strip()) for p in script.replace("&&", ";").split(";")]
        out = [p[2:] if p[0] == "exec" else p[1:] for p in parts if "fedsilo" in p[:2]]
    elif "command" in service:
        out = [service["command"]]
    check = service.get("healthcheck", {}).get("test", [])
    if check[:2] == ["CMD", "fedsilo"]:
        out.append(check[2:])
    return out


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
        if name in NOT_FEDSILO:
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
    assert seen_configs >= 8


def _with_certs(config: Path, tmp_path: Path) -> Path:
    """Copy a config beside dummy key files so it loads (keys are made at deploy time)."""
    (tmp_path / "keys").mkdir(exist_ok=True)
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
        (tmp_path / "keys" / f).write_text("placeholder")
    copy = tmp_path / config.name
    copy.write_text(config.read_text())
    return copy


@pytest.fixture(autouse=True)
def _bank_db_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bank's config reads its database URL from the environment (a secret)."""
    monkeypatch.setenv("BANK_DB_URL", "postgresql+psycopg://bank:secret@postgres:5432/bank")


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
        keys = [v for v in services[party]["volumes"] if v.endswith(":/etc/fedsilo/keys:ro")]
        assert keys == [f"{party}-keys:/etc/fedsilo/keys:ro"], f"{party}: {keys}"
        assert f"{party}-keys:/out/{party}" in services["keys"]["volumes"]
        assert not [v for v in services[party]["volumes"] if "certs" in v], party


def test_one_silo_uses_postgres_the_others_sqlite(tmp_path: Path) -> None:
    urls = {
        p: load_silo_config(_with_certs(DOCKER / "config" / f"{p}.toml", tmp_path)).database_url
        for p in ("bank", "bureau", "lender")
    }
    assert urls["bank"].startswith("postgresql")
    assert urls["bureau"].startswith("sqlite") and urls["lender"].startswith("sqlite")
    bank = compose()["services"]["bank"]
    assert bank["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert "BANK_DB_URL" in (DOCKER / "config" / "bank.toml").read_text()


def test_deployment_rules() -> None:
    """Health checks, healthy dependencies, restart policies, no inline password, and
    nothing written under /etc/fedsilo (reports and databases live in each silo's volume)."""
    services = compose()["services"]
    raw = (DOCKER / "compose.yaml").read_text()
    assert "PASSWORD:" not in raw.replace("PASSWORD_FILE:", "")
    for name in ("bank", "bureau", "lender", "coordinator"):
        s = services[name]
        assert s["healthcheck"]["test"][:3] == ["CMD", "fedsilo", "health"], name
        assert s["restart"] == "unless-stopped", name
        assert s["depends_on"]["keys"] == {"condition": "service_completed_successfully"}
        data = [v for v in s["volumes"] if v.endswith(":/var/lib/fedsilo")]
        assert data == [f"{name}-data:/var/lib/fedsilo"], name
    for party in ("bank", "bureau", "lender"):
        assert services["coordinator"]["depends_on"][party] == {"condition": "service_healthy"}
        text = (DOCKER / "config" / f"{party}.toml").read_text()
        assert 'output_dir = "/var/lib/fedsilo"' in text
    assert "healthcheck" in services["postgres"]


def test_job_file_parses(tmp_path: Path) -> None:
    from fedsilo.coordinator.config import load_job_spec
    from fedsilo.coordinator.drivers import driver_kinds

    _with_certs(DOCKER / "config" / "coordinator.toml", tmp_path)
    job = _with_certs(DOCKER / "config" / "job.toml", tmp_path)
    spec = load_job_spec(job)
    assert set(spec.parties) == {"bank", "bureau", "lender"}
    assert {s["kind"] for s in spec.steps} <= set(driver_kinds())
