"""`fedsilo run`, `jobs`, `models`, `coordinator serve`, `silo describe`."""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time

import grpc

from fedsilo import settings
from fedsilo.cli.progress import RichProgress
from fedsilo.coordinator.config import JobSpec, load_coordinator_config, load_job_spec
from fedsilo.coordinator.connect import connect_silos
from fedsilo.coordinator.orchestrator import run_job
from fedsilo.coordinator.server import serve_coordinator
from fedsilo.coordinator.store import JobStore
from fedsilo.crypto import tls
from fedsilo.errors import ConfigError
from fedsilo.grpc_errors import raise_from_rpc
from fedsilo.protos import fedsilo_pb2 as pb
from fedsilo.protos import fedsilo_pb2_grpc as pb_grpc


def run(args: argparse.Namespace) -> int:
    spec = load_job_spec(args.job)
    if args.coordinator:
        return _submit(args, spec)
    if spec.consortium is None:
        raise ConfigError(
            f"{args.job.name}: needs 'coordinator = \"coordinator.toml\"' "
            "(or pass --coordinator ADDR)"
        )
    store = JobStore(spec.consortium.database_url)
    clients = connect_silos(spec.consortium, sorted(spec.parties))
    with RichProgress() as progress:
        record = run_job(
            spec,
            clients=clients,
            store=store,
            progress=progress,
            job_id=args.resume,
            resume=bool(args.resume),
        )
    print(f"job {record.job_id}: {record.state}")
    print(json.dumps(record.result, indent=2))
    return 0


def _coordinator_channel(address: str, spec: JobSpec) -> grpc.Channel:
    """mTLS to the coordinator with this party's files from the job's consortium config."""
    consortium = spec.consortium
    if consortium is None:
        raise ConfigError(
            "the job file needs 'coordinator = \"coordinator.toml\"' for the "
            "TLS files used to reach the coordinator"
        )
    if consortium.tls.insecure_plaintext:
        return grpc.insecure_channel(address)
    assert consortium.tls.ca and consortium.tls.cert and consortium.tls.key
    creds = tls.channel_credentials(
        ca=consortium.tls.ca, cert=consortium.tls.cert, key=consortium.tls.key
    )
    return grpc.secure_channel(address, creds, options=tls.identity_options(consortium.name))


def _submit(args: argparse.Namespace, spec: JobSpec) -> int:
    channel = _coordinator_channel(args.coordinator, spec)
    stub = pb_grpc.CoordinatorServiceStub(channel)
    req = pb.SubmitJobRequest(
        spec_toml=args.job.read_text(), resume=bool(args.resume), job_id=args.resume or ""
    )
    try:
        status = stub.SubmitJob(req, timeout=settings.CONTROL_DEADLINE_S)
        while status.state in ("queued", "running"):
            time.sleep(1.0)
            status = stub.GetJob(
                pb.GetJobRequest(job_id=status.job_id), timeout=settings.CONTROL_DEADLINE_S
            )
    except grpc.RpcError as err:
        raise raise_from_rpc(err, "coordinator") from None
    print(f"job {status.job_id}: {status.state} {status.reason}".rstrip())
    return 0 if status.state == "succeeded" else 8


def _store(args: argparse.Namespace) -> JobStore:
    return JobStore(load_coordinator_config(args.config).database_url)


def jobs(args: argparse.Namespace) -> int:
    store = _store(args)
    if args.job_id:
        rec = store.get_job(args.job_id)
        print(f"{rec.job_id}  {rec.state}  {rec.reason}".rstrip())
        for at, message in store.events(rec.job_id):
            print(f"  {at}  {message}")
        for party, signed in store.ledger_heads(rec.job_id).items():  # for audit --expect-head
            head, mark = signed.head, "signed" if signed.signed else "UNSIGNED"
            print(f"  ledger head of {party}: {head.seq}:{head.hash} ({mark})")
        print(json.dumps(rec.result, indent=2))
        return 0
    for rec in store.list_jobs():
        print(f"{rec.job_id:<40} {rec.state:<10} {rec.updated_at}  {rec.reason[:60]}")
    return 0


def models(args: argparse.Namespace) -> int:
    store = _store(args)
    if args.action == "show":
        if not args.model_id:
            raise ConfigError("fedsilo models show needs a MODEL_ID")
        m = store.get_model(args.model_id)
        print(
            json.dumps(
                {
                    "model_id": m.model_id,
                    "version": m.version,
                    "kind": m.kind,
                    "job_id": m.job_id,
                    "created_at": m.created_at,
                    **m.record,
                },
                indent=2,
            )
        )
        return 0
    for m in store.list_models():
        metrics = m.record.get("metrics", {})
        auc = metrics.get("auc")
        auc_text = f"auc={auc:.4f}" if isinstance(auc, float) else ""
        print(f"{m.model_id:<32} {m.kind:<20} {m.created_at}  {auc_text}")
    return 0


def describe(args: argparse.Namespace) -> int:
    config = load_coordinator_config(args.config)
    for party, client in connect_silos(config).items():
        info = client.describe()
        print(f"{party} ({config.silos[party]}): health {client.health()}, api {info.api_version}")
        for d in info.datasets:
            label = f", label '{d.label}'" if d.label else ""
            print(f"  dataset '{d.name}': {d.rows} rows, {len(d.features)} features{label}")
    return 0


def serve_coordinator_cmd(args: argparse.Namespace) -> int:
    config = load_coordinator_config(args.config)
    server, port, _store_ = serve_coordinator(config)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"coordinator '{config.name}' serving on port {port}", flush=True)
    stop.wait()
    server.stop(5).wait()
    return 0
