"""Start the label holder's scoring endpoints from ``[serving]``: uvicorn (HTTP/JSON) in a
thread of the silo process, and the gRPC ``ScoringService`` on ``grpc_listen``."""

from __future__ import annotations

import hmac
import logging
import ssl
import threading
import time
from concurrent import futures
from dataclasses import dataclass

import grpc
import uvicorn

from fedsilo import settings
from fedsilo.crypto import tls
from fedsilo.errors import AuthError, FedsiloError
from fedsilo.grpc_errors import abort_on_error
from fedsilo.grpc_options import server_options
from fedsilo.protos import fedsilo_pb2 as pb
from fedsilo.protos import fedsilo_pb2_grpc as pb_grpc
from fedsilo.silo_node.config import ServingConfig
from fedsilo.silo_node.serving.active import Transaction
from fedsilo.silo_node.serving.api import build_app
from fedsilo.silo_node.serving.host import ServingHost

__all__ = ["Endpoints", "start_endpoints"]

log = logging.getLogger(__name__)


class ScoringServicer(pb_grpc.ScoringServiceServicer):
    def __init__(self, host: ServingHost, token: str | None) -> None:
        self.host = host
        self.expected = f"Bearer {token}" if token else None

    @abort_on_error
    def Score(self, request: pb.ScoreRequest, context: grpc.ServicerContext) -> pb.ScoreResponse:
        if self.expected is not None:
            given = dict(context.invocation_metadata()).get("authorization", "")
            if not hmac.compare_digest(str(given).encode(), self.expected.encode()):
                raise AuthError("missing or wrong bearer token")
        hub = self.host.hub(request.model)
        transactions = [
            Transaction(t.id, dict(t.features) if t.features else None)
            for t in request.transactions
        ]
        results, degraded = hub.score(transactions, request.deadline_ms or None)
        return pb.ScoreResponse(
            model=hub.record.model,
            degraded=degraded,
            results=[
                pb.ScoreResult(id=r.id, score=r.score, contributed=r.contributed, missing=r.missing)
                for r in results
            ],
        )


@dataclass
class Endpoints:
    http: uvicorn.Server
    thread: threading.Thread
    grpc_server: grpc.Server | None
    http_port: int
    grpc_port: int | None

    def stop(self) -> None:
        self.http.should_exit = True
        self.thread.join(timeout=5)
        if self.grpc_server is not None:
            self.grpc_server.stop(0.5).wait()


def _uvicorn(config: ServingConfig, host: ServingHost) -> uvicorn.Server:
    address, port = config.listen.rsplit(":", 1)
    options: dict[str, object] = {}
    if config.cert is not None:
        options = {
            "ssl_certfile": str(config.cert),
            "ssl_keyfile": str(config.key),
            "ssl_ca_certs": str(config.ca),
            "ssl_cert_reqs": ssl.CERT_REQUIRED,
        }
    app = build_app(host, token=config.token)
    uv = uvicorn.Config(
        app,
        host=address,
        port=int(port),
        log_level="warning",
        access_log=False,
        lifespan="off",
        **options,  # type: ignore[arg-type]
    )
    return uvicorn.Server(uv)


def _grpc(config: ServingConfig, host: ServingHost) -> tuple[grpc.Server, int]:
    assert config.grpc_listen is not None
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.SERVER_THREADS), options=server_options()
    )
    pb_grpc.add_ScoringServiceServicer_to_server(ScoringServicer(host, config.token), server)
    if config.cert is not None:
        assert config.ca and config.key
        creds = tls.server_credentials(ca=config.ca, cert=config.cert, key=config.key)
        port = server.add_secure_port(config.grpc_listen, creds)
    else:
        port = server.add_insecure_port(config.grpc_listen)
    server.start()
    return server, port


def start_endpoints(config: ServingConfig, host: ServingHost) -> Endpoints:
    """Start both endpoints; returns once the HTTP server accepts connections."""
    if config.insecure_plaintext:
        log.warning(
            "scoring endpoint at %s has NO authentication (insecure_plaintext)", config.listen
        )
    http = _uvicorn(config, host)
    thread = threading.Thread(target=http.run, daemon=True, name="serving-http")
    thread.start()
    end = time.monotonic() + settings.CONTROL_DEADLINE_S
    while not http.started:
        if not thread.is_alive() or time.monotonic() > end:
            raise FedsiloError(f"the scoring endpoint could not listen on {config.listen}")
        time.sleep(0.02)
    port = http.servers[0].sockets[0].getsockname()[1] if http.servers else 0
    grpc_server, grpc_port = _grpc(config, host) if config.grpc_listen else (None, None)
    return Endpoints(http, thread, grpc_server, int(port), grpc_port)
