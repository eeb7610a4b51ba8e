"""`fedsilo score --model ID`: batch scoring as a job of its own.

Without ``--alignment`` the job first runs PSI over the datasets to score, so the silos agree on
the customers they share; then the ``score`` step writes ``(id, score, model version, scored
at)`` rows into the label holder's table, chunk by chunk. Rerunning (or ``--resume``) continues
where a crash stopped and never writes a row twice.

A whole model (horizontal ``hxgb`` / ``hlr``: every member holds all of it) needs no PSI and no
other silo: the job has one party, the member named by ``--dataset PARTY=DATASET`` (default: the
model's first member, on the dataset it trained on), which scores its own dataset alone.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from fedsilo import settings
from fedsilo.cli.progress import RichProgress
from fedsilo.coordinator.config import load_coordinator_config, parse_job_spec
from fedsilo.coordinator.connect import connect_silos
from fedsilo.coordinator.orchestrator import run_job
from fedsilo.coordinator.store import JobStore
from fedsilo.errors import ConfigError
from fedsilo.protocols import WHOLE_KINDS


def _datasets(record: dict[str, Any], overrides: list[str]) -> dict[str, str]:
    datasets = dict(record.get("trained_on", {}).get("datasets", {}))
    for item in overrides:
        party, sep, dataset = item.partition("=")
        if not sep or party not in record["parties"]:
            raise ConfigError(f"--dataset {item!r}: expected PARTY=DATASET, PARTY of the model")
        datasets[party] = dataset
    return datasets


def whole_model_member(record: dict[str, Any], overrides: list[str]) -> tuple[str, str]:
    """``(party, dataset)`` where a whole model scores: the one ``--dataset`` names, else the
    model's first member on the dataset it trained on."""
    members = sorted(p for p, role in record["parties"].items() if role == "member")
    if len(overrides) > 1:
        raise ConfigError("a whole model scores at one member: give at most one --dataset")
    if not overrides:
        if not members:
            raise ConfigError("the model has no member to score at")
        party = members[0]
        return party, str(record["trained_on"]["datasets"][party])
    party, sep, dataset = overrides[0].partition("=")
    if not sep or not dataset or party not in members:
        raise ConfigError(
            f"--dataset {overrides[0]!r}: expected PARTY=DATASET, PARTY a member of the model"
        )
    return party, dataset


def score_spec(
    model_id: str,
    record: dict[str, Any],
    *,
    datasets: dict[str, str],
    alignment: str | None,
    table: str,
    chunk_rows: int,
) -> dict[str, Any]:
    """The job that scores with ``model_id``: PSI (unless an alignment is given), then score."""
    parties = {p: {"dataset": datasets[p], "role": role} for p, role in record["parties"].items()}
    steps: list[dict[str, Any]] = []
    name = f"score-{model_id}"[:60]
    if alignment is None:
        alignment = f"{name}-{int(time.time())}"
        steps.append({"kind": "psi", "alignment": alignment})
    steps.append(
        {
            "kind": "score",
            "model": model_id,
            "alignment": alignment,
            "table": table,
            "chunk_rows": chunk_rows,
        }
    )
    return {"name": name, "parties": parties, "steps": steps}


def whole_score_spec(
    model_id: str, *, party: str, dataset: str, alignment: str | None, table: str, chunk_rows: int
) -> dict[str, Any]:
    """The job that scores with a whole model at one member alone: no PSI, one score step
    (which stores the member's own ids as the alignment unless one is given)."""
    step: dict[str, Any] = {
        "kind": "score",
        "model": model_id,
        "table": table,
        "chunk_rows": chunk_rows,
    }
    if alignment is not None:
        step["alignment"] = alignment
    return {
        "name": f"score-{model_id}"[:60],
        "parties": {party: {"dataset": dataset, "role": "member"}},
        "steps": [step],
    }


def _spec_for(
    model_kind: str, model_id: str, record: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    chunk_rows = args.chunk_rows or settings.WRITE_CHUNK_ROWS
    if model_kind in WHOLE_KINDS:
        party, dataset = whole_model_member(record, args.dataset)
        return whole_score_spec(
            model_id,
            party=party,
            dataset=dataset,
            alignment=args.alignment,
            table=args.table,
            chunk_rows=chunk_rows,
        )
    return score_spec(
        model_id,
        record,
        datasets=_datasets(record, args.dataset),
        alignment=args.alignment,
        table=args.table,
        chunk_rows=chunk_rows,
    )


def score(args: argparse.Namespace) -> int:
    consortium = load_coordinator_config(args.config)
    store = JobStore(consortium.database_url)
    model = store.get_model(args.model)
    raw = _spec_for(model.kind, model.model_id, model.record, args)
    if args.resume:  # the same steps as the failed run (its PSI alignment name included)
        stored = store.get_job(args.resume).spec
        raw = {k: stored[k] for k in ("name", "parties", "steps")}
    spec = parse_job_spec(raw, Path(args.config).parent / "score.toml")
    clients = connect_silos(consortium, sorted(spec.parties))
    with RichProgress() as progress:
        record = run_job(
            spec,
            clients=clients,
            store=store,
            progress=progress,
            job_id=args.resume,
            resume=bool(args.resume),
        )
    out = next(v for k, v in record.result.items() if k.endswith(":score"))
    print(f"job {record.job_id}: {record.state}; {json.dumps(out)}")
    return 0
