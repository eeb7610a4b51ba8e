"""`fedsilo coordinator serve`: the coordinator as a long-running gRPC service.

Jobs submitted here run one at a time in a background thread (a consortium's silos are the
bottleneck, not the coordinator). At start, jobs a previous process left queued or running are
marked failed with the reason, so no job is ever stuck in ``running``.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import tomllib
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from fedsilo import settings
from fedsilo.coordinator.config import CoordinatorConfig, JobSpec, parse_job_spec
from fedsilo.coordinator.connect import connect_silos
from fedsilo.coordinator.orchestrator import run_job
from fedsilo.coordinator.store import JobRecord, JobStore
from fedsilo.crypto import tls
from fedsilo.errors import ConfigError, FedsiloError
from fedsilo.grpc_errors import RequestDecodeGuard, abort_on_error
from fedsilo.grpc_options import server_options
from fedsilo.protos import fedsilo_pb2 as pb
from fedsilo.protos import fedsilo_pb2_grpc as pb_grpc

__all__ = ["CoordinatorService", "serve_coordinator"]

log = logging.getLogger(__name__)
RESTART_REASON = "coordinator restarted while the job was queued or running; rerun with --resume"


def _status(rec: JobRecord) -> pb.JobStatus:
    return pb.JobStatus(
        job_id=rec.job_id,
        name=rec.name,
        state=rec.state,
        reason=rec.reason,
        result_json=json.dumps(rec.result),
        created_at=rec.created_at,
        updated_at=rec.updated_at,
    )


class CoordinatorService(pb_grpc.CoordinatorServiceServicer):
    def __init__(self, config: CoordinatorConfig, store: JobStore) -> None:
        self.config = config
        self.store = store
        self._queue: queue.Queue[tuple[str, JobSpec, bool]] = queue.Queue()
        self._worker = threading.Thread(target=self._work, daemon=True, name="jobs")
        self._worker.start()

    def _work(self) -> None:
        while True:
            job_id, spec, resume = self._queue.get()
            try:
                clients = connect_silos(self.config, sorted(spec.parties))
                run_job(spec, clients=clients, store=self.store, job_id=job_id, resume=resume)
            except FedsiloError as err:
                log.warning("job %s failed: %s", job_id, err)
                self._fail_if_unfinished(job_id, str(err))
            except Exception as err:
                log.exception("job %s crashed", job_id)
                self._fail_if_unfinished(job_id, f"internal error: {type(err).__name__}: {err}")

    def _fail_if_unfinished(self, job_id: str, reason: str) -> None:
        """A job that failed before ``run_job`` took charge (no silo client, say) must not stay
        ``queued`` until the next restart; ``run_job`` records its own failures itself."""
        try:
            if self.store.get_job(job_id).state in ("queued", "running"):
                self.store.set_state(job_id, "failed", reason=reason)
        except Exception:  # the store itself is down: the next start's fail_interrupted runs
            log.exception("could not mark job %s failed", job_id)

    @abort_on_error
    def SubmitJob(
        self, request: pb.SubmitJobRequest, context: grpc.ServicerContext
    ) -> pb.JobStatus:
        try:
            raw = tomllib.loads(request.spec_toml)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"job spec: invalid TOML: {exc}") from None
        raw.pop("coordinator", None)
        spec = parse_job_spec(raw, Path("job.toml"))
        missing = sorted(set(spec.parties) - set(self.config.silos))
        if missing:
            raise ConfigError(f"job spec: party '{missing[0]}' is not a silo of this coordinator")
        if request.resume and request.job_id:
            job_id = request.job_id
            self.store.get_job(job_id)
        else:
            job_id = self.store.create_job(spec.name, spec.to_wire(""), request.job_id or None)
        self._queue.put((job_id, spec, bool(request.resume)))
        return _status(self.store.get_job(job_id))

    @abort_on_error
    def GetJob(self, request: pb.GetJobRequest, context: grpc.ServicerContext) -> pb.JobStatus:
        return _status(self.store.get_job(request.job_id))

    @abort_on_error
    def ListJobs(
        self, request: pb.ListJobsRequest, context: grpc.ServicerContext
    ) -> pb.ListJobsResponse:
        return pb.ListJobsResponse(jobs=[_status(r) for r in self.store.list_jobs()])

    @abort_on_error
    def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.ServicerContext
    ) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(
            models=[
                pb.ModelRecord(
                    model_id=m.model_id,
                    record_json=json.dumps(
                        {
                            "version": m.version,
                            "name": m.name,
                            "kind": m.kind,
                            "job_id": m.job_id,
                            "created_at": m.created_at,
                            **m.record,
                        }
                    ),
                )
                for m in self.store.list_models()
            ]
        )


def serve_coordinator(config: CoordinatorConfig) -> tuple[grpc.Server, int, JobStore]:
    store = JobStore(config.database_url)
    failed = store.fail_interrupted(RESTART_REASON)
    if failed:
        log.warning("marked %d interrupted job(s) failed: %s", len(failed), ", ".join(failed))
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.SERVER_THREADS),
        options=server_options(),
        interceptors=[RequestDecodeGuard()],
    )
    pb_grpc.add_CoordinatorServiceServicer_to_server(CoordinatorService(config, store), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if config.tls.insecure_plaintext:
        port = server.add_insecure_port(config.listen)
    else:
        assert config.tls.ca and config.tls.cert and config.tls.key
        port = server.add_secure_port(
            config.listen,
            tls.server_credentials(ca=config.tls.ca, cert=config.tls.cert, key=config.tls.key),
        )
    server.start()
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    return server, port, store
