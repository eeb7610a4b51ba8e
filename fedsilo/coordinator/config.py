"""Coordinator config (the consortium) and job specs, both TOML.

``coordinator.toml``::

    name = "coordinator"              # its certificate identity
    listen = "127.0.0.1:50050"        # for `fedsilo coordinator serve`
    database = "sqlite:///coordinator.db"
    [tls]                             # or: insecure_plaintext = true
    ca = "certs/ca.pem"
    cert = "certs/coordinator.pem"
    key = "certs/coordinator.key"
    [silos.bank]
    address = "127.0.0.1:50051"

``job.toml``::

    name = "default-risk"
    coordinator = "coordinator.toml"  # the consortium file, relative to the job file
    [parties.bank]
    dataset = "customers"
    role = "active"                   # active (label holder), passive, or member (horizontal)
    [[steps]]
    kind = "psi"
    alignment = "default-risk"
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedsilo.envsubst import expand_env
from fedsilo.errors import ConfigError
from fedsilo.jobschema import check_steps

__all__ = [
    "CoordinatorConfig",
    "JobSpec",
    "TlsFiles",
    "load_coordinator_config",
    "load_job_spec",
    "parse_job_spec",
]


@dataclass(frozen=True)
class TlsFiles:
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    insecure_plaintext: bool = False


@dataclass(frozen=True)
class CoordinatorConfig:
    name: str
    listen: str
    database_url: str
    tls: TlsFiles
    silos: dict[str, str]
    path: Path


@dataclass(frozen=True)
class JobSpec:
    name: str
    parties: dict[str, dict[str, Any]]
    steps: list[dict[str, Any]]
    consortium: CoordinatorConfig | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    def to_wire(self, job_id: str) -> dict[str, Any]:
        """What the silos receive at OpenJob: no addresses, no local paths."""
        return {"job_id": job_id, "name": self.name, "parties": self.parties, "steps": self.steps}

    def parties_with_role(self, role: str) -> list[str]:
        return sorted(p for p, v in self.parties.items() if v.get("role") == role)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def _check_keys(path: Path, where: str, table: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{path.name}: {where} has unknown key '{unknown[0]}'")


def _need_str(path: Path, table: dict[str, Any], key: str, where: str = "") -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{path.name}: {where}'{key}' must be a non-empty string")
    return value


def _resolve_url(url: str, base: Path) -> str:
    """Relative SQLite paths are relative to the config file, not to the working directory."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix + ":memory:":
        return prefix + str((base / url[len(prefix) :]).resolve())
    return url


def parse_tls(path: Path, table: dict[str, Any]) -> TlsFiles:
    _check_keys(path, "[tls]", table, {"ca", "cert", "key", "insecure_plaintext"})
    if table.get("insecure_plaintext") is True:
        return TlsFiles(insecure_plaintext=True)
    base = path.parent
    files = {k: base / _need_str(path, table, k, "[tls] ") for k in ("ca", "cert", "key")}
    return TlsFiles(ca=files["ca"], cert=files["cert"], key=files["key"])


def load_coordinator_config(path: Path) -> CoordinatorConfig:
    raw = expand_env(_read_toml(path), path.name)
    _check_keys(path, "top level", raw, {"name", "listen", "database", "tls", "silos"})
    silos_raw = raw.get("silos")
    if not isinstance(silos_raw, dict) or not silos_raw:
        raise ConfigError(f"{path.name}: needs at least one [silos.NAME] with an address")
    silos = {}
    for name, table in silos_raw.items():
        _check_keys(path, f"[silos.{name}]", table, {"address"})
        silos[name] = _need_str(path, table, "address", f"[silos.{name}] ")
    return CoordinatorConfig(
        name=raw.get("name", "coordinator"),
        listen=raw.get("listen", "127.0.0.1:50050"),
        database_url=_resolve_url(raw.get("database", "sqlite:///coordinator.db"), path.parent),
        tls=parse_tls(path, raw.get("tls", {})),
        silos=silos,
        path=path,
    )


def parse_job_spec(raw: dict[str, Any], path: Path) -> JobSpec:
    """Validate a whole job spec: its shape, and every step against its kind's schema
    (:mod:`fedsilo.jobschema`: keys, types, bounds), each error one line naming the file, the
    step and the key. What needs the drivers (roles, earlier steps) is checked by ``run_job``
    and ``fedsilo job check`` before any silo is contacted."""
    _check_keys(path, "top level", raw, {"name", "coordinator", "parties", "steps"})
    parties = raw.get("parties")
    if not isinstance(parties, dict) or not parties:
        raise ConfigError(f"{path.name}: needs at least one [parties.NAME]")
    for name, table in parties.items():
        _check_keys(path, f"[parties.{name}]", table, {"dataset", "role", "columns"})
        _need_str(path, table, "dataset", f"[parties.{name}] ")
        if table.get("role") not in ("active", "passive", "member"):
            raise ConfigError(
                f"{path.name}: [parties.{name}] role must be active, passive or member"
            )
    steps = raw.get("steps", [])
    if not isinstance(steps, list) or not steps:
        raise ConfigError(f"{path.name}: needs at least one [[steps]] entry")
    try:
        check_steps(steps)
    except ConfigError as err:
        raise ConfigError(f"{path.name}: {err}") from None
    consortium = None
    if "coordinator" in raw:
        consortium = load_coordinator_config(path.parent / _need_str(path, raw, "coordinator"))
        missing = sorted(set(parties) - set(consortium.silos))
        if missing:
            raise ConfigError(
                f"{path.name}: party '{missing[0]}' is not a silo of {consortium.path.name}"
            )
    name = raw.get("name", path.stem)
    return JobSpec(name=name, parties=parties, steps=steps, consortium=consortium, raw=raw)


def load_job_spec(path: Path) -> JobSpec:
    return parse_job_spec(_read_toml(path), path)
