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
import time
import tomllib
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from fedsilo import settings
from fedsilo.coordinator.config import CoordinatorConfig, JobSpec, parse_job_spec
from fedsilo.coordinator.connect import connect_silos
from fedsilo.coordinator.orchestrator import run_job
from fedsilo.coordinator.store import FINAL_STATES, JobRecord, JobStore
from fedsilo.crypto import tls
from fedsilo.errors import ConfigError, FedsiloError, error_class, root_cause
from fedsilo.grpc_errors import RequestDecodeGuard, abort_on_error
from fedsilo.grpc_options import server_options
from fedsilo.protos import fedsilo_pb2 as pb
from fedsilo.protos import fedsilo_pb2_grpc as pb_grpc

__all__ = ["CoordinatorService", "exit_code_of", "job_status", "serve_coordinator", "watch_job"]

log = logging.getLogger(__name__)
RESTART_REASON = "coordinator restarted while the job was queued or running; rerun with --resume"


def exit_code_of(rec: JobRecord) -> int:
    """What ``fedsilo`` exits with for the job's outcome: 0 unless it failed or was cancelled,
    then the code of the error class it recorded (``fedsilo.errors.EXIT_CODES``)."""
    if rec.state not in ("failed", "cancelled"):
        return 0
    return error_class(str(rec.result.get("error", "JobError"))).exit_code


def job_status(rec: JobRecord) -> pb.JobStatus:
    return pb.JobStatus(
        exit_code=exit_code_of(rec),
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
                log.warning("job %s ended: %s", job_id, err)
                self._fail_if_unfinished(job_id, str(err), type(root_cause(err)).__name__)
            except Exception as err:
                log.exception("job %s crashed", job_id)
                reason = f"internal error: {type(err).__name__}: {err}"
                self._fail_if_unfinished(job_id, reason, type(err).__name__)

    def _fail_if_unfinished(self, job_id: str, reason: str, error: str) -> None:
        """A job that failed before ``run_job`` took charge (no silo client, say) must not stay
        ``queued`` until the next restart; ``run_job`` records its own failures itself."""
        try:
            rec = self.store.get_job(job_id)
            if rec.state in ("queued", "running"):
                result = {**rec.result, "error": error}
                self.store.set_state(job_id, "failed", reason=reason, result=result)
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
        return job_status(self.store.get_job(job_id))

    @abort_on_error
    def GetJob(self, request: pb.GetJobRequest, context: grpc.ServicerContext) -> pb.JobStatus:
        return job_status(self.store.get_job(request.job_id))

    @abort_on_error
    def ListJobs(
        self, request: pb.ListJobsRequest, context: grpc.ServicerContext
    ) -> pb.ListJobsResponse:
        return pb.ListJobsResponse(jobs=[job_status(r) for r in self.store.list_jobs()])

    @abort_on_error
    def CancelJob(
        self, request: pb.CancelJobRequest, context: grpc.ServicerContext
    ) -> pb.JobStatus:
        """Ask the job's runner (this service's worker) to cancel it; answers at once."""
        if self.store.request_cancel(request.job_id):
            self.store.add_event(request.job_id, "cancel requested")
        return job_status(self.store.get_job(request.job_id))

    @abort_on_error
    def WatchJob(
        self, request: pb.WatchJobRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.JobUpdate]:
        self.store.get_job(request.job_id)  # NotFound before the stream starts
        return watch_job(self.store, request.job_id, int(request.after_seq), context.is_active)

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


def watch_job(
    store: JobStore, job_id: str, after: int, active: Callable[[], bool]
) -> Iterator[pb.JobUpdate]:
    """The job's new events and changed progress every ``WATCH_POLL_S``, then its final status
    (after the events it wrote on its way out)."""
    progress: dict[str, object] | None = None
    while active():
        rec = store.get_job(job_id)  # read first: events written before a final state are sent
        for ev in store.events_after(job_id, after):
            after = ev.seq
            yield pb.JobUpdate(event=pb.JobEvent(seq=ev.seq, at=ev.at, message=ev.message))
        now = store.progress(job_id)
        if now != progress and now.get("tasks"):
            progress = now
            yield pb.JobUpdate(progress_json=json.dumps(now))
        if rec.state in FINAL_STATES:
            yield pb.JobUpdate(status=job_status(rec))
            return
        time.sleep(settings.WATCH_POLL_S)


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
