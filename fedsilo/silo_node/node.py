"""Start a silo node from its config: check the data, create own tables, serve gRPC.

Order matters: the datasets are validated against the real database *before* any of the silo's
own tables are created, so a bad config or a bad table leaves the database untouched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import grpc
from sqlalchemy import Engine

from fedsilo.crypto import tls
from fedsilo.errors import ConfigError
from fedsilo.silo_node.config import SiloConfig, load_silo_config
from fedsilo.silo_node.context import SiloContext
from fedsilo.silo_node.data import make_engine as make_data_engine
from fedsilo.silo_node.data import open_silo
from fedsilo.silo_node.limits import HEALTH_CHECK
from fedsilo.silo_node.server import build_server
from fedsilo.silo_node.serving.endpoints import Endpoints, start_endpoints
from fedsilo.silo_node.serving.host import ServingHost

__all__ = ["SiloNode", "open_context", "start_silo"]

log = logging.getLogger(__name__)


@dataclass
class SiloNode:
    ctx: SiloContext
    server: grpc.Server
    port: int
    serving: ServingHost
    #: the label holder's scoring endpoints, when its config has a ``[serving]`` section
    endpoints: Endpoints | None = None

    @property
    def address(self) -> str:
        host = self.ctx.config.listen.rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    def stop(self, grace: float | None = 0.5) -> None:
        if self.endpoints is not None:
            self.endpoints.stop()
        self.server.stop(grace).wait()
        self.serving.close()
        self.ctx.data.engine.dispose()


def make_engine(config: SiloConfig) -> Engine:
    """The silo's engine (SQLite busy timeout set: ledger appends wait for long writes)."""
    return make_data_engine(config.database_url)


def open_context(config: SiloConfig) -> SiloContext:
    """Validate the datasets, then create the silo's own tables; raises on bad data."""
    opened = open_silo(config)
    return SiloContext(config=config, data=opened.data, store=opened.store, ledger=opened.ledger)


def _security(
    config: SiloConfig,
) -> tuple[grpc.ServerCredentials | None, list[grpc.ServerInterceptor]]:
    if config.tls.insecure_plaintext:
        log.warning("silo %s serves PLAINTEXT gRPC (insecure_plaintext = true)", config.party)
        return None, []
    if not (config.tls.ca and config.tls.cert and config.tls.key and config.tls.coordinator):
        raise ConfigError(
            f"{config.file_label}: [tls] needs ca, cert, key and coordinator "
            "(or insecure_plaintext = true)"
        )
    creds = tls.server_credentials(ca=config.tls.ca, cert=config.tls.cert, key=config.tls.key)
    own = {HEALTH_CHECK: (config.party, "silo")}  # `fedsilo health` beside the silo, own key
    interceptor = tls.IdentityInterceptor(
        allowed={config.tls.coordinator}, role="coordinator", also=own
    )
    return creds, [interceptor]


def start_silo(config: SiloConfig | Path | str) -> SiloNode:
    """Load (if a path), check and start a silo node; returns once it is serving."""
    if not isinstance(config, SiloConfig):
        config = load_silo_config(config)
    creds, interceptors = _security(config)
    ctx = open_context(config)
    serving = ServingHost(ctx)
    server, port = build_server(ctx, credentials=creds, interceptors=interceptors, serving=serving)
    node = SiloNode(ctx=ctx, server=server, port=port, serving=serving)
    if config.serving is not None:
        try:
            node.endpoints = start_endpoints(config.serving, serving)
        except BaseException:
            node.stop(grace=None)
            raise
    return node
