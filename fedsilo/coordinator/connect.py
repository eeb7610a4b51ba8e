"""Channels from the coordinator to its silos: mTLS by default, verifying each silo's identity."""

from __future__ import annotations

import logging

import grpc

from fedsilo.coordinator.client import SiloClient
from fedsilo.coordinator.config import CoordinatorConfig
from fedsilo.crypto import tls
from fedsilo.grpc_options import channel_options

__all__ = ["connect_silos"]

log = logging.getLogger(__name__)


def open_channel(config: CoordinatorConfig, party: str) -> grpc.Channel:
    """A channel to ``party``; with TLS the silo's certificate must name ``party``."""
    address = config.silos[party]
    if config.tls.insecure_plaintext:
        return grpc.insecure_channel(address, options=channel_options())
    assert config.tls.ca and config.tls.cert and config.tls.key
    creds = tls.channel_credentials(ca=config.tls.ca, cert=config.tls.cert, key=config.tls.key)
    options = channel_options() + tls.identity_options(party)
    return grpc.secure_channel(address, creds, options=options)


def connect_silos(
    config: CoordinatorConfig, parties: list[str] | None = None
) -> dict[str, SiloClient]:
    if config.tls.insecure_plaintext:
        log.warning("coordinator talks to silos in PLAINTEXT (insecure_plaintext = true)")
    names = parties if parties is not None else sorted(config.silos)
    return {p: SiloClient(p, open_channel(config, p)) for p in names}
