"""The silo node's gRPC server: a thin adapter from RPCs to ``SiloContext`` and steps."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import grpc
from cryptography import x509
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from fedsilo import __version__, leakage, settings
from fedsilo.crypto.certs import TlsFiles, load_certificate
from fedsilo.crypto.session_auth import SessionKey, SessionKeySigner, verify_peer_keys
from fedsilo.crypto.tls import peer_identity
from fedsilo.errors import ConfigError, PolicyError, ProtocolError
from fedsilo.grpc_errors import RequestDecodeGuard, abort_on_error
from fedsilo.grpc_options import server_options
from fedsilo.logs import clean, event
from fedsilo.message import parse_json
from fedsilo.protos import fedsilo_pb2 as pb
from fedsilo.protos import fedsilo_pb2_grpc as pb_grpc
from fedsilo.silo_node import heads
from fedsilo.silo_node.config import SiloConfig, TlsConfig
from fedsilo.silo_node.context import SiloContext
from fedsilo.silo_node.dispatch import load_method_modules, run_method
from fedsilo.silo_node.limits import (
    UNLIMITED_METHODS,
    AdmissionInterceptor,
    CallLimiter,
    paced_replies,
    timed_frames,
)
from fedsilo.silo_node.serving.host import SERVE_METHOD, ServingHost
from fedsilo.silo_node.session import JobSession, check_job_id, check_spec_shape
from fedsilo.wire import chunks, join_chunks, pack_step, unpack_step

__all__ = [
    "API_VERSION",
    "SessionKeyAuth",
    "SiloServicer",
    "build_server",
    "session_key_auth",
]

log = logging.getLogger(__name__)
API_VERSION = "fedsilo.v1"


@dataclass(frozen=True)
class SessionKeyAuth:
    """With mTLS: how this silo signs its session keys and the CA it checks its peers' against."""

    signer: SessionKeySigner
    ca: x509.Certificate


def session_key_auth(party: str, tls: TlsConfig) -> SessionKeyAuth | None:
    """The silo's key signing and checking, derived from its TLS config (not passed separately,
    so a TLS silo cannot be started without it); None in plaintext mode, which has no CA."""
    if tls.insecure_plaintext:
        return None
    if not (tls.ca and tls.cert and tls.key):
        raise ConfigError("[tls] needs ca, cert and key (or insecure_plaintext = true)")
    files = TlsFiles(ca=tls.ca, cert=tls.cert, key=tls.key)
    return SessionKeyAuth(
        signer=SessionKeySigner.load(party, files), ca=load_certificate(tls.ca, "CA certificate")
    )


class SiloServicer(pb_grpc.SiloServiceServicer):
    def __init__(self, ctx: SiloContext, serving: ServingHost | None = None) -> None:
        self.ctx = ctx
        self.key_auth = session_key_auth(ctx.party, ctx.config.tls)
        self.serving = serving or ServingHost(ctx)

    @abort_on_error
    def Serve(
        self, request_iterator: Iterator[pb.ServeFrame], context: grpc.ServicerContext
    ) -> Iterator[pb.ServeFrame]:
        """Online scoring's long-lived stream (:mod:`fedsilo.silo_node.serving.host`)."""
        return self.serving.open(request_iterator)

    @abort_on_error
    def Describe(
        self, request: pb.DescribeRequest, context: grpc.ServicerContext
    ) -> pb.DescribeResponse:
        # Feature names are the silo's to publish: only with release_feature_names.
        names = self.ctx.config.policy.release_feature_names
        datasets = [
            pb.DatasetInfo(
                name=d.name,
                rows=d.rows,
                id_column=d.id_column,
                features=[f if names else f"feature_{i}" for i, f in enumerate(d.features)],
                label=d.label or "",
            )
            for d in self.ctx.data.describe()
        ]
        return pb.DescribeResponse(
            party=self.ctx.party,
            api_version=API_VERSION,
            software_version=__version__,
            datasets=datasets,
            policy_json=_policy_json(self.ctx),
        )

    @abort_on_error
    def OpenJob(
        self, request: pb.OpenJobRequest, context: grpc.ServicerContext
    ) -> pb.OpenJobResponse:
        spec = _json_object(request.spec_json, "job spec")
        check_spec_shape(spec)
        job_id = check_job_id(request.job_id)
        _check_party_names(self.ctx.config, job_id, spec)
        session = self.ctx.open_session(job_id, spec, resume=request.resume)
        caller, peer = _caller(context)
        self.ctx.ledger.record_accepted(
            job_id=job_id,
            spec=spec,
            role=session.role,
            dataset=session.dataset,
            resume=request.resume,
            caller=caller,
            peer=peer,
        )
        event(
            log,
            "job opened",
            silo=self.ctx.party,
            job=clean(job_id),
            role=session.role,
            dataset=session.dataset,
            resume=request.resume,
            caller=clean(caller),
        )
        accepted = {"party": self.ctx.party, "role": session.role, "dataset": session.dataset}
        public = session.keys.public_bytes
        key = self.key_auth.signer.sign(job_id, public) if self.key_auth else SessionKey(public)
        return pb.OpenJobResponse(
            session_public_key=key.public_key,
            session_key_signature=key.signature,
            certificate_pem=key.certificate_pem,
            accepted_json=json.dumps(accepted),
        )

    @abort_on_error
    def SetPeers(
        self, request: pb.SetPeersRequest, context: grpc.ServicerContext
    ) -> pb.SetPeersResponse:
        session = self.ctx.sessions.get(request.job_id)
        peers = _peer_keys(request, self.ctx.party)
        if self.key_auth is None:
            log.warning(
                "silo %s accepts unverified session keys for job %s (insecure_plaintext: no CA "
                "to check them against; a deviating coordinator could swap them)",
                self.ctx.party,
                request.job_id,
            )
            keys = {party: key.public_key for party, key in peers.items()}
        else:
            _check_job_parties(session, peers, self.ctx.party)
            keys = verify_peer_keys(self.key_auth.ca, request.job_id, peers)
        session.keys.set_peers(keys)
        return pb.SetPeersResponse()

    @abort_on_error
    def CloseJob(
        self, request: pb.CloseJobRequest, context: grpc.ServicerContext
    ) -> pb.CloseJobResponse:
        job_id = request.job_id
        self.ctx.sessions.close(job_id)
        if not _is_job_id(job_id):
            return pb.CloseJobResponse()  # no job was ever open under it: nothing to record
        if self.ctx.ledger.took_part(job_id):
            caller, peer = _caller(context)
            self.ctx.ledger.record_close(
                job_id=job_id,
                failed=request.failed,
                reason=request.reason,
                caller=caller,
                peer=peer,
            )
            event(
                log,
                "job closed",
                silo=self.ctx.party,
                job=clean(job_id),
                failed=request.failed,
                reason=clean(request.reason) or "-",
                caller=clean(caller),
            )
        head = heads.sign_own_head(self.ctx.ledger, job_id, self._head_key())
        return pb.CloseJobResponse(ledger_head=heads.to_pb(head))

    @abort_on_error
    def KeepLedgerHeads(
        self, request: pb.KeepLedgerHeadsRequest, context: grpc.ServicerContext
    ) -> pb.KeepLedgerHeadsResponse:
        ca = self.key_auth.ca if self.key_auth else None
        kept = heads.keep_peer_heads(
            self.ctx.ledger, check_job_id(request.job_id), request.heads, ca=ca
        )
        return pb.KeepLedgerHeadsResponse(kept=kept)

    def _head_key(self) -> SessionKeySigner | None:
        return self.key_auth.signer if self.key_auth else None

    def on_refused(
        self, method: str, request: Any, context: grpc.ServicerContext, err: Exception
    ) -> None:
        """Every refused call goes into the ledger (``abort_on_error`` calls this), with the
        one-line reason the caller is told, and one line in the silo's log. A refusal dispatch
        already recorded with its job (``fedsilo.silo_node.ledger.refuse``) is not recorded
        twice."""
        job_id = getattr(request, "job_id", "")
        first = getattr(request, "first", None)  # a Step stream's header (grpc_errors.FirstKept)
        if method == "_step":
            header = first.header if first is not None and first.HasField("header") else None
            job_id = header.job_id if header else ""
            method = f"Step {header.method}" if header else "Step"
        caller, peer = _caller(context)
        event(
            log,
            "request refused",
            logging.WARNING,
            silo=self.ctx.party,
            method=clean(method, 80),
            job=clean(job_id) if isinstance(job_id, str) and job_id else "-",
            caller=clean(caller),
            reason=clean(err),
        )
        if getattr(err, "ledger_recorded", False):
            return
        self.ctx.ledger.record_refusal(
            method=method,
            reason=str(err),
            job_id=job_id if isinstance(job_id, str) else "",
            caller=caller,
            peer=peer,
        )

    def Step(
        self, request_iterator: Iterator[pb.Frame], context: grpc.ServicerContext
    ) -> Iterator[pb.Frame]:
        reply = self._step(request_iterator, context)
        frames = (pb.Frame(chunk=part) for part in chunks(reply))
        yield from paced_replies(
            frames,
            context.cancel,
            idle_s=settings.STEP_STREAM_IDLE_TIMEOUT_S,
            total_s=settings.STEP_STREAM_MAX_TRANSFER_S,
        )

    @abort_on_error
    def _step(self, request_iterator: Iterator[pb.Frame], context: grpc.ServicerContext) -> bytes:
        started = time.monotonic()
        timed = timed_frames(
            request_iterator,
            idle_s=settings.STEP_STREAM_IDLE_TIMEOUT_S,
            total_s=settings.STEP_STREAM_MAX_TRANSFER_S,
        )
        with closing(timed) as frames:
            first = next(frames, None)
            if first is None or not first.HasField("header"):
                raise ProtocolError("a step must start with a header frame")
            head = first.header
            if head.total_bytes > settings.MAX_LOGICAL_MESSAGE_BYTES:
                raise ProtocolError("step payload exceeds the logical size limit")
            session = self.ctx.sessions.get(head.job_id)
            data = join_chunks((_chunk(f) for f in frames), expected=head.total_bytes)
        payload = unpack_step(data, request=True, party=self.ctx.party)
        reply = run_method(self.ctx, session, head.method, head.seq, payload)
        data_out = pack_step(reply, request=False)
        event(
            log,
            "step served",
            silo=self.ctx.party,
            job=clean(head.job_id),
            method=clean(head.method, 80),
            step=_step_index(payload.meta.get("step")),
            ms=round(1000 * (time.monotonic() - started), 1),
            bytes_in=len(data),
            bytes_out=len(data_out),
        )
        return data_out


def _step_index(value: object) -> int | str:
    """The step index a call named, for the log (a non-integer one as short clean text)."""
    return value if isinstance(value, int) else clean(value, 12)


def _is_job_id(job_id: str) -> bool:
    try:
        check_job_id(job_id)
    except ProtocolError:
        return False
    return True


def _caller(context: grpc.ServicerContext) -> tuple[str, str]:
    """Who called, for the ledger, as (text, peer): under mTLS the verified certificate name
    (also the entry's peer); in plaintext the connection's address, marked unauthenticated,
    and the ``coordinator`` pseudo-recipient as peer."""
    identity = peer_identity(context)
    if identity is not None:
        return f"'{identity}' (mTLS)", identity
    return f"unauthenticated {context.peer()[:80]}", leakage.COORDINATOR


def _policy_json(ctx: SiloContext) -> str:
    """The silo's policy as published JSON (sets as sorted lists)."""
    policy = ctx.config.policy
    return json.dumps(
        {
            "protocols": sorted(policy.protocols),
            "roles": sorted(policy.roles),
            "min_intersection": policy.min_intersection,
            "min_paillier_bits": policy.min_paillier_bits,
            "min_rows_per_statistic": policy.min_rows_per_statistic,
            "release_feature_names": policy.release_feature_names,
            "allowed_columns": {k: sorted(v) for k, v in policy.allowed_columns.items()},
            "peers": sorted(policy.peers) if policy.peers is not None else None,
            "release_statistics": policy.release_statistics,
            "release_stability": policy.release_stability,
            "release_partial_scores": policy.release_partial_scores,
            "release_feature_contributions": policy.release_feature_contributions,
            "release_group_counts": {k: sorted(v) for k, v in policy.release_group_counts.items()},
            "serve_models": sorted(policy.serve_models),
            "serve_rate_limit": policy.serve_rate_limit,
            "serve_daily_budget": policy.serve_daily_budget,
        }
    )


def _check_party_names(config: SiloConfig, job_id: str, spec: dict[str, Any]) -> None:
    """Refuse a job naming this silo's coordinator as a party (it would receive what only silos
    may: sealed payloads, the CKKS secret key, the PSI leader's view), or a peer the policy does
    not list. A non-silo certificate behind any other name is refused at SetPeers."""
    for party in sorted(spec["parties"]):
        if party == config.party:
            continue
        if party == config.tls.coordinator:
            raise PolicyError(
                f"job '{job_id}' names this silo's coordinator '{party[:40]}' as a party"
            )
        config.policy.check_peer(party)


def _peer_keys(request: pb.SetPeersRequest, me: str) -> dict[str, SessionKey]:
    """The peers' keys with their proofs (own entry dropped); a proof without a key is refused."""
    keys, proofs = request.session_public_keys, request.session_key_proofs
    stray = sorted(set(proofs) - set(keys))
    if stray:
        raise ProtocolError(f"session key proof for '{stray[0]}' without a session key")
    out = {}
    for party, public in keys.items():
        if party == me:
            continue
        proof = proofs.get(party)
        out[party] = SessionKey(
            public,
            proof.signature if proof else b"",
            proof.certificate_pem if proof else "",
        )
    return out


def _check_job_parties(session: JobSession, peers: dict[str, SessionKey], me: str) -> None:
    """Under mTLS every other party of the job must have a (signed) key, and only they: so a
    coordinator cannot invent a party, which would need a consortium certificate in its name."""
    expected = set(session.parties) - {me}
    missing, extra = sorted(expected - set(peers)), sorted(set(peers) - expected)
    if missing:
        raise ProtocolError(f"no session key for party '{missing[0]}' of this job")
    if extra:
        raise ProtocolError(f"session key for '{extra[0]}', which is not a party of this job")


def _chunk(frame: pb.Frame) -> bytes:
    if not frame.HasField("chunk"):
        raise ProtocolError("a step has exactly one header frame, then chunks")
    return frame.chunk


def _json_object(text: str, what: str) -> dict[str, Any]:
    value = parse_json(text, what)
    if not isinstance(value, dict):
        raise ProtocolError(f"{what} is not a JSON object")
    return value


def build_server(
    ctx: SiloContext,
    *,
    credentials: grpc.ServerCredentials | None,
    interceptors: list[grpc.ServerInterceptor] | None = None,
    serving: ServingHost | None = None,
) -> tuple[grpc.Server, int]:
    """A started silo server on ``ctx.config.listen``; ``credentials=None`` means plaintext.

    Calls pass ``interceptors`` (the identity check) first, then the admission caps
    (``limits.py``), so health and Describe always find a free thread; then request parsing.
    """
    load_method_modules()
    if settings.MAX_JOB_CALLS >= settings.SERVER_THREADS:
        raise ConfigError("MAX_JOB_CALLS must stay below SERVER_THREADS (threads for health)")
    limiter = CallLimiter(
        total=settings.MAX_JOB_CALLS, per_caller=settings.MAX_JOB_CALLS_PER_CALLER
    )
    admission = AdmissionInterceptor(limiter, unlimited=UNLIMITED_METHODS | {SERVE_METHOD})
    server = grpc.server(
        # each Serve stream holds a thread of its own, outside the job calls' caps
        futures.ThreadPoolExecutor(
            max_workers=settings.SERVER_THREADS + settings.SERVING_MAX_STREAMS
        ),
        options=server_options(),
        interceptors=[*(interceptors or []), admission, RequestDecodeGuard()],
    )
    pb_grpc.add_SiloServiceServicer_to_server(SiloServicer(ctx, serving), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if credentials is None:
        port = server.add_insecure_port(ctx.config.listen)
    else:
        port = server.add_secure_port(ctx.config.listen, credentials)
    if port == 0:
        raise OSError(f"silo '{ctx.party}' cannot listen on {ctx.config.listen}")
    server.start()
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_servicer.set("fedsilo.v1.SiloService", health_pb2.HealthCheckResponse.SERVING)
    log.info("silo %s listening on %s (port %d)", ctx.party, ctx.config.listen, port)
    return server, port
