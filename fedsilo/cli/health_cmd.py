"""`fedsilo health`: one gRPC health check of a silo or the coordinator, over mTLS.

Given a silo config it checks that silo with the silo's own certificate (the silo lets its own
identity call the health check, nothing else); given a coordinator config it checks the
coordinator, or with ``--silo NAME`` one of its silos, with the coordinator's certificate. A
listen address on all interfaces (``0.0.0.0``, ``[::]``) is dialled on loopback, so the command
suits a container's health check. Exit 0 when the service answers SERVING.
"""

from __future__ import annotations

import argparse
import tomllib
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fedsilo.coordinator.config import load_coordinator_config
from fedsilo.crypto import tls
from fedsilo.errors import ConfigError, SiloUnavailable
from fedsilo.grpc_errors import raise_from_rpc
from fedsilo.grpc_options import channel_options
from fedsilo.silo_node.config import SiloConfig, load_silo_config

__all__ = ["Target", "channel_for", "health", "local_address", "silo_target"]

_ANY_HOST = {"0.0.0.0", "[::]", "::", ""}  # noqa: S104 (recognised, never bound)


@dataclass(frozen=True)
class Target:
    """Whom to check, where, and with which files (None: the insecure plaintext mode)."""

    name: str
    address: str
    files: tuple[Path, Path, Path] | None


def local_address(listen: str) -> str:
    """Where to dial a service listening on ``listen`` from its own machine."""
    host, _, port = listen.rpartition(":")
    return f"127.0.0.1:{port}" if host in _ANY_HOST else listen


def _is_silo_config(path: Path) -> bool:
    try:
        return "party" in tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path.name}: file not found ({path})") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"{path.name}: cannot read ({err})") from None


def silo_target(silo: SiloConfig, address: str | None = None) -> Target:
    """A silo checked with its own certificate, at ``address`` or its local listen address."""
    t = silo.tls
    files = None if t.insecure_plaintext else (t.ca, t.cert, t.key)
    return Target(silo.party, address or local_address(silo.listen), files)  # type: ignore[arg-type]


def _target(args: argparse.Namespace) -> Target:
    path: Path = args.config
    if _is_silo_config(path):
        if args.silo:
            raise ConfigError("--silo needs a coordinator config")
        return silo_target(load_silo_config(path), args.address)
    coord = load_coordinator_config(path)
    c = coord.tls
    files = None if c.insecure_plaintext else (c.ca, c.cert, c.key)
    if args.silo:
        if args.silo not in coord.silos:
            raise ConfigError(f"{path.name}: no [silos.{args.silo}]")
        return Target(args.silo, args.address or coord.silos[args.silo], files)  # type: ignore[arg-type]
    return Target(coord.name, args.address or local_address(coord.listen), files)  # type: ignore[arg-type]


def channel_for(target: Target) -> grpc.Channel:
    if target.files is None:
        return grpc.insecure_channel(target.address, options=channel_options())
    ca, cert, key = target.files
    creds = tls.channel_credentials(ca=ca, cert=cert, key=key)
    options = channel_options() + tls.identity_options(target.name)
    return grpc.secure_channel(target.address, creds, options=options)


def health(args: argparse.Namespace) -> int:
    target = _target(args)
    with channel_for(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=args.timeout)
        except grpc.RpcError as err:
            raise raise_from_rpc(err, target.name) from None
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        raise SiloUnavailable(f"'{target.name}' at {target.address}: {status}")
    print(f"{target.name} at {target.address}: {status}")
    return 0
