"""`fedsilo run`, `coordinator serve`, `silo describe`."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

import grpc

from fedsilo import settings
from fedsilo.cli.output import print_json, print_table
from fedsilo.cli.progress import RichProgress
from fedsilo.cli.watch import follow, status_dict
from fedsilo.coordinator.config import JobSpec, load_coordinator_config, load_job_spec
from fedsilo.coordinator.connect import connect_silos
from fedsilo.coordinator.orchestrator import run_job
from fedsilo.coordinator.server import job_status, serve_coordinator
from fedsilo.coordinator.store import JobStore
from fedsilo.crypto import tls
from fedsilo.errors import ConfigError, FedsiloError
from fedsilo.grpc_errors import raise_from_rpc
from fedsilo.progress import NullProgress
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
    try:
        with RichProgress() as display:
            record = run_job(
                spec,
                clients=clients,
                store=store,
                progress=NullProgress() if args.json else display,
                job_id=args.resume,
                resume=bool(args.resume),
            )
    except FedsiloError as err:
        job_id = getattr(err, "job_id", None)
        if args.json and job_id:  # the failed job's record on stdout, the error on stderr
            print_json(status_dict(job_status(store.get_job(job_id))))
        raise
    if args.json:
        print_json(status_dict(job_status(record)))
        return 0
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
    """Submit to a running coordinator and follow the job there (events, progress) to its end;
    exits with the code of the job's outcome."""
    channel = _coordinator_channel(args.coordinator, spec)
    stub = pb_grpc.CoordinatorServiceStub(channel)
    req = pb.SubmitJobRequest(
        spec_toml=args.job.read_text(), resume=bool(args.resume), job_id=args.resume or ""
    )
    try:
        status = stub.SubmitJob(req, timeout=settings.CONTROL_DEADLINE_S)
        if not args.json:
            print(f"job {status.job_id}: submitted to {args.coordinator}", file=sys.stderr)
        with RichProgress() as display:
            updates = stub.WatchJob(pb.WatchJobRequest(job_id=status.job_id))
            final = follow(updates, progress=None if args.json else display, events_on_stdout=False)
        if final is None:  # the watch ended early (coordinator stopping): its last known state
            final = stub.GetJob(
                pb.GetJobRequest(job_id=status.job_id), timeout=settings.CONTROL_DEADLINE_S
            )
    except grpc.RpcError as err:
        raise raise_from_rpc(err, "coordinator") from None
    if args.json:
        print_json(status_dict(final))
    else:
        print(f"job {final.job_id}: {final.state} {final.reason}".rstrip())
        if final.state == "succeeded":
            print(json.dumps(json.loads(final.result_json or "{}"), indent=2))
    return int(final.exit_code)


def describe(args: argparse.Namespace) -> int:
    config = load_coordinator_config(args.config)
    silos = []
    for party, client in connect_silos(config).items():
        info = client.describe()
        silos.append(
            {
                "party": party,
                "address": config.silos[party],
                "health": client.health(),
                "api_version": info.api_version,
                "software_version": info.software_version,
                "datasets": [
                    {
                        "name": d.name,
                        "rows": d.rows,
                        "id_column": d.id_column,
                        "features": list(d.features),
                        "label": d.label or None,
                    }
                    for d in info.datasets
                ],
                "policy": json.loads(info.policy_json or "{}"),
            }
        )
    if args.json:
        print_json({"silos": silos})
        return 0
    rows = [
        (s["party"], s["address"], s["health"], s["api_version"], d["name"], d["rows"])
        + (len(d["features"]), d["label"])
        for s in silos
        for d in s["datasets"]
    ]
    print_table(
        ["SILO", "ADDRESS", "HEALTH", "API", "DATASET", "ROWS", "FEATURES", "LABEL"],
        rows,
        empty="no datasets",
    )
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
