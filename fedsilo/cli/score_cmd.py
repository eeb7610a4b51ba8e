"""`fedsilo score --model ID`: batch scoring as a job of its own.

Without ``--alignment`` the job first runs PSI over the datasets to score, so the silos agree on
the customers they share; then the ``score`` step writes ``(id, score, model version, scored
at)`` rows into the label holder's table, chunk by chunk. Rerunning (or ``--resume``) continues
where a crash stopped and never writes a row twice.
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


def _datasets(record: dict[str, Any], overrides: list[str]) -> dict[str, str]:
    datasets = dict(record.get("trained_on", {}).get("datasets", {}))
    for item in overrides:
        party, sep, dataset = item.partition("=")
        if not sep or party not in record["parties"]:
            raise ConfigError(f"--dataset {item!r}: expected PARTY=DATASET, PARTY of the model")
        datasets[party] = dataset
    return datasets


def score_spec(model_id: str, record: dict[str, Any], *, datasets: dict[str, str],
               alignment: str | None, table: str, chunk_rows: int) -> dict[str, Any]:
    """The job that scores with ``model_id``: PSI (unless an alignment is given), then score."""
    parties = {p: {"dataset": datasets[p], "role": role} for p, role in record["parties"].items()}
    steps: list[dict[str, Any]] = []
    name = f"score-{model_id}"[:60]
    if alignment is None:
        alignment = f"{name}-{int(time.time())}"
        steps.append({"kind": "psi", "alignment": alignment})
    steps.append({"kind": "score", "model": model_id, "alignment": alignment, "table": table,
                  "chunk_rows": chunk_rows})
    return {"name": name, "parties": parties, "steps": steps}


def score(args: argparse.Namespace) -> int:
    consortium = load_coordinator_config(args.config)
    store = JobStore(consortium.database_url)
    model = store.get_model(args.model)
    raw = score_spec(model.model_id, model.record,
                     datasets=_datasets(model.record, args.dataset), alignment=args.alignment,
                     table=args.table, chunk_rows=args.chunk_rows or settings.WRITE_CHUNK_ROWS)
    if args.resume:  # the same steps as the failed run (its PSI alignment name included)
        stored = store.get_job(args.resume).spec
        raw = {k: stored[k] for k in ("name", "parties", "steps")}
    spec = parse_job_spec(raw, Path(args.config).parent / "score.toml")
    clients = connect_silos(consortium, sorted(spec.parties))
    with RichProgress() as progress:
        record = run_job(spec, clients=clients, store=store, progress=progress,
                         job_id=args.resume, resume=bool(args.resume))
    out = next(v for k, v in record.result.items() if k.endswith(":score"))
    print(f"job {record.job_id}: {record.state}; {json.dumps(out)}")
    return 0
