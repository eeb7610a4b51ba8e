"""`fedsilo jobs [show|cancel|logs] [ID]` and `fedsilo models [show ID]`, read from the
coordinator's store (the same database a running coordinator service writes)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from fedsilo import settings
from fedsilo.cli.output import print_json, print_table
from fedsilo.cli.progress import RichProgress
from fedsilo.cli.watch import follow, status_dict
from fedsilo.coordinator.config import load_coordinator_config
from fedsilo.coordinator.server import exit_code_of, job_status, watch_job
from fedsilo.coordinator.store import FINAL_STATES, JobRecord, JobStore, ModelRecord
from fedsilo.errors import ConfigError

__all__ = ["jobs", "models"]

_ACTIONS = ("show", "cancel", "logs")


def _store(args: argparse.Namespace) -> JobStore:
    return JobStore(load_coordinator_config(args.config).database_url)


def _job_dict(rec: JobRecord) -> dict[str, Any]:
    return {
        "job_id": rec.job_id,
        "name": rec.name,
        "state": rec.state,
        "reason": rec.reason,
        "exit_code": exit_code_of(rec),
        "created_at": rec.created_at,
        "updated_at": rec.updated_at,
    }


def _words(args: argparse.Namespace) -> tuple[str, str | None]:
    """(action, job id) from ``jobs [show|cancel|logs] [ID]``."""
    words = list(args.words)
    action = words.pop(0) if words and words[0] in _ACTIONS else ("show" if words else "list")
    if len(words) > 1:
        raise ConfigError(f"fedsilo jobs: one job id expected, got {len(words)}")
    job_id = words[0] if words else None
    if action != "list" and job_id is None:
        raise ConfigError(f"fedsilo jobs {action} needs a JOB_ID")
    return action, job_id


def jobs(args: argparse.Namespace) -> int:
    action, job_id = _words(args)
    store = _store(args)
    if action == "list":
        return _list(store, args.json)
    assert job_id is not None
    return {"show": _show, "cancel": _cancel, "logs": _logs}[action](store, job_id, args)


def _list(store: JobStore, as_json: bool) -> int:
    records = list(reversed(store.list_jobs()))  # newest first
    if as_json:
        print_json({"jobs": [_job_dict(r) for r in records]})
        return 0
    print_table(
        ["JOB", "STATE", "CREATED", "UPDATED", "REASON"],
        [(r.job_id, r.state, r.created_at, r.updated_at, r.reason[:60]) for r in records],
        empty="no jobs",
    )
    return 0


def _show(store: JobStore, job_id: str, args: argparse.Namespace) -> int:
    rec = store.get_job(job_id)
    events = store.events_after(job_id)
    heads = store.ledger_heads(job_id)
    if args.json:
        print_json(
            {
                **_job_dict(rec),
                "result": rec.result,
                "progress": store.progress(job_id),
                "events": [{"seq": e.seq, "at": e.at, "message": e.message} for e in events],
                "ledger_heads": {
                    p: {"seq": h.head.seq, "hash": h.head.hash, "signed": h.signed}
                    for p, h in heads.items()
                },
            }
        )
        return 0
    print(f"{rec.job_id}  {rec.state}  {rec.reason}".rstrip())
    for e in events:
        print(f"  {e.at}  {e.message}")
    for party, signed in heads.items():  # for audit --expect-head
        head, mark = signed.head, "signed" if signed.signed else "UNSIGNED"
        print(f"  ledger head of {party}: {head.seq}:{head.hash} ({mark})")
    print_json(rec.result)
    return 0


def _cancel(store: JobStore, job_id: str, args: argparse.Namespace) -> int:
    """Request the cancel, then wait (``--wait``) for whoever runs the job to end it."""
    requested = store.request_cancel(job_id)
    if requested:
        store.add_event(job_id, "cancel requested")
    deadline = time.monotonic() + max(0.0, args.wait)
    rec = store.get_job(job_id)
    while requested and rec.state not in FINAL_STATES and time.monotonic() < deadline:
        time.sleep(settings.CANCEL_POLL_S)
        rec = store.get_job(job_id)
    if args.json:
        print_json({**_job_dict(rec), "cancel_requested": requested})
    elif not requested:
        print(f"job {job_id} had already ended: {rec.state}")
    elif rec.state in FINAL_STATES:
        print(f"job {job_id}: {rec.state}")
    else:
        print(f"job {job_id}: cancel requested; still {rec.state} (no runner has seen it yet)")
    return 0


def _logs(store: JobStore, job_id: str, args: argparse.Namespace) -> int:
    rec = store.get_job(job_id)
    if args.follow:
        updates = watch_job(store, job_id, 0, lambda: True)
        with RichProgress() as progress:
            status = follow(
                updates,
                progress=None if args.json else progress,
                events_on_stdout=True,
                as_json=args.json,
            )
        return 0 if status is None else int(status.exit_code)  # the job's own outcome
    events = store.events_after(job_id)
    if args.json:
        print_json(
            {
                "job_id": job_id,
                "state": rec.state,
                "events": [{"seq": e.seq, "at": e.at, "message": e.message} for e in events],
                "progress": store.progress(job_id),
                "status": status_dict(job_status(rec)),
            }
        )
        return 0
    for e in events:
        print(f"{e.at}  {e.message}")
    return 0


def _model_dict(m: ModelRecord) -> dict[str, Any]:
    return {
        "model_id": m.model_id,
        "version": m.version,
        "name": m.name,
        "kind": m.kind,
        "job_id": m.job_id,
        "created_at": m.created_at,
        **m.record,
    }


def models(args: argparse.Namespace) -> int:
    store = _store(args)
    if args.action == "show":
        if not args.model_id:
            raise ConfigError("fedsilo models show needs a MODEL_ID")
        print_json(_model_dict(store.get_model(args.model_id)))  # JSON either way
        return 0
    records = list(reversed(store.list_models()))  # newest first
    if args.json:
        print_json({"models": [_model_dict(m) for m in records]})
        return 0
    rows = []
    for m in records:
        auc = m.record.get("metrics", {}).get("auc")
        rows.append((m.model_id, m.kind, m.job_id, m.created_at, auc))
    print_table(["MODEL", "KIND", "JOB", "CREATED", "AUC"], rows, empty="no models")
    return 0
