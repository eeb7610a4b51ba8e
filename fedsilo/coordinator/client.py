"""The coordinator's client for one silo node: deadlines on every call, retries only when safe."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fedsilo import settings
from fedsilo.crypto.ledger_heads import SignedHead
from fedsilo.crypto.session_auth import SessionKey, silo_certificate
from fedsilo.errors import SiloUnavailable
from fedsilo.grpc_errors import is_retryable, raise_from_rpc
from fedsilo.protos import fedsilo_pb2 as pb
from fedsilo.protos import fedsilo_pb2_grpc as pb_grpc
from fedsilo.wire import StepPayload, chunks, join_chunks, pack_step, unpack_step

if TYPE_CHECKING:
    from fedsilo.coordinator.cancel import CancelScope

__all__ = ["SiloClient"]


class SiloClient:
    """Talks to the silo ``party`` over ``channel`` (injected: tests pass a loopback channel)."""

    def __init__(self, party: str, channel: grpc.Channel) -> None:
        self.party = party
        self.channel = channel
        self._stub = pb_grpc.SiloServiceStub(channel)
        self._health = health_pb2_grpc.HealthStub(channel)

    def _idempotent(self, fn: Any, request: Any) -> Any:
        """Retry an idempotent call with exponential backoff on UNAVAILABLE only.

        A TLS identity failure is UNAVAILABLE too, but retrying cannot fix a wrong certificate:
        it is raised at once as an AuthError (``grpc_errors.is_retryable``).
        """
        delay = settings.RETRY_BACKOFF_S
        for attempt in range(settings.IDEMPOTENT_RETRIES):
            try:
                return fn(request, timeout=settings.CONTROL_DEADLINE_S)
            except grpc.RpcError as err:
                if not is_retryable(err, self.party) or attempt == settings.IDEMPOTENT_RETRIES - 1:
                    raise raise_from_rpc(err, self.party) from None
                time.sleep(delay)
                delay *= 2
        raise SiloUnavailable(f"silo '{self.party}' unavailable")  # pragma: no cover

    def health(self) -> str:
        resp = self._idempotent(self._health.Check, health_pb2.HealthCheckRequest(service=""))
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status))

    def describe(self) -> pb.DescribeResponse:
        return self._idempotent(self._stub.Describe, pb.DescribeRequest())

    def _call(self, fn: Any, request: Any, deadline: float) -> Any:
        try:
            return fn(request, timeout=deadline)
        except grpc.RpcError as err:
            raise raise_from_rpc(err, self.party) from None

    def open_job(
        self, job_id: str, spec: dict[str, Any], *, resume: bool
    ) -> tuple[SessionKey, dict[str, Any]]:
        """Open the job at the silo: its session key (signed under mTLS) and what it accepted.

        A signed key must come with a silo certificate for this party (AuthError otherwise):
        the TLS handshake proved the name, this proves the role, so a coordinator-role
        certificate answering at a silo's address goes no further. The silos check it again.
        """
        req = pb.OpenJobRequest(job_id=job_id, spec_json=json.dumps(spec), resume=resume)
        resp = self._call(self._stub.OpenJob, req, settings.CONTROL_DEADLINE_S)
        key = SessionKey(resp.session_public_key, resp.session_key_signature, resp.certificate_pem)
        if key.signed:
            silo_certificate(self.party, key.certificate_pem)
        return key, json.loads(resp.accepted_json or "{}")

    def set_peers(self, job_id: str, keys: Mapping[str, SessionKey]) -> None:
        """Relay every party's key with its proof exactly as its silo returned them: the
        coordinator cannot sign, so the silos check the keys themselves."""
        proofs = {
            party: pb.SessionKeyProof(signature=k.signature, certificate_pem=k.certificate_pem)
            for party, k in keys.items()
            if k.signed
        }
        req = pb.SetPeersRequest(
            job_id=job_id,
            session_public_keys={party: k.public_key for party, k in keys.items()},
            session_key_proofs=proofs,
        )
        self._call(self._stub.SetPeers, req, settings.CONTROL_DEADLINE_S)

    def close_job(
        self, job_id: str, *, failed: bool = False, reason: str = ""
    ) -> SignedHead | None:
        """Close the job's session; after a failure only briefly (the silo may be the cause).

        Returns the silo's ledger head as it signed it at close (None if it sent none), for the
        coordinator to keep and relay; the coordinator cannot check more than its shape.
        """
        req = pb.CloseJobRequest(job_id=job_id, failed=failed, reason=reason)
        deadline = settings.CLOSE_DEADLINE_S if failed else settings.CONTROL_DEADLINE_S
        resp = self._call(self._stub.CloseJob, req, deadline)
        if not resp.HasField("ledger_head"):
            return None
        head = resp.ledger_head
        return SignedHead(head.statement, head.signature, head.certificate_pem)

    def keep_ledger_heads(self, job_id: str, heads: list[SignedHead]) -> int:
        """Relay the job's other parties' signed ledger heads to this silo, which keeps them."""
        req = pb.KeepLedgerHeadsRequest(
            job_id=job_id,
            heads=[
                pb.SignedLedgerHead(
                    statement=h.statement, signature=h.signature, certificate_pem=h.certificate_pem
                )
                for h in heads
            ],
        )
        return int(self._call(self._stub.KeepLedgerHeads, req, settings.CLOSE_DEADLINE_S).kept)

    def step(
        self,
        job_id: str,
        method: str,
        seq: int,
        payload: StepPayload,
        *,
        deadline: float = settings.STEP_DEADLINE_S,
        cancel: CancelScope | None = None,
    ) -> StepPayload:
        """One protocol step (not retried: steps change silo state); ``cancel`` can end it
        while in flight (then JobCancelled)."""
        data = pack_step(payload, request=True)

        def frames() -> Iterator[pb.Frame]:
            yield pb.Frame(
                header=pb.StepHeader(job_id=job_id, method=method, seq=seq, total_bytes=len(data))
            )
            for part in chunks(data):
                yield pb.Frame(chunk=part)

        call = self._stub.Step(frames(), timeout=deadline)
        try:
            with cancel.track(call) if cancel is not None else nullcontext():
                reply = join_chunks(f.chunk for f in call)
        except grpc.RpcError as err:
            if cancel is not None and cancel.cancelled:
                cancel.check(job_id)
            raise raise_from_rpc(err, self.party) from None
        return unpack_step(reply, request=False, party=self.party)

    def serve(self, frames: Iterator[pb.ServeFrame], *, timeout: float) -> Iterator[pb.ServeFrame]:
        """Open the long-lived Serve stream of online scoring (``fedsilo.coordinator.serving``);
        the caller reads the returned iterator and handles ``grpc.RpcError`` (it reconnects)."""
        stream: Iterator[pb.ServeFrame] = self._stub.Serve(frames, timeout=timeout)
        return stream
