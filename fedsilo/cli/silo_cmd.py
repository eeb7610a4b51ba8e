"""`fedsilo silo serve|check`."""

from __future__ import annotations

import argparse
import json
import signal
import threading
from pathlib import Path
from typing import Any

from fedsilo.errors import ConfigError
from fedsilo.silo_node.config import load_silo_config
from fedsilo.silo_node.csv_load import load_csv_into_dataset, parse_id_normalisation
from fedsilo.silo_node.demo_data import DEMO_DATA_DIR, DEMO_PARTIES
from fedsilo.silo_node.id_profile import id_profile
from fedsilo.silo_node.node import open_context, start_silo


def check(args: argparse.Namespace) -> int:
    """Validate config and datasets; per dataset its rows and how its ids are written."""
    config = load_silo_config(args.config)
    ctx = open_context(config)
    try:
        datasets: list[dict[str, Any]] = [
            {
                "dataset": info.name,
                "rows": info.rows,
                "features": len(info.features),
                "label": info.label,
                "ids": id_profile(ctx.data, info.name),
            }
            for info in ctx.data.describe()
        ]
    finally:
        ctx.data.engine.dispose()
    if getattr(args, "json", False):
        print(json.dumps({"party": config.party, "ok": True, "datasets": datasets}, indent=2))
        return 0
    for d in datasets:
        label = f", label '{d['label']}'" if d["label"] else ""
        print(
            f"{config.party}: dataset '{d['dataset']}': {d['rows']} rows, "
            f"{d['features']} features{label}"
        )
        ids = d["ids"]
        formats = ", ".join(f"{f['format']} ({f['share']:.0%})" for f in ids["formats"])
        print(
            f"  ids: {ids['type']}, length {ids['length'][0]}-{ids['length'][1]}, "
            f"case {ids['case']}, formats {formats}; sample sha256[:12] "
            f"{' '.join(ids['sample_sha256_12'])} (first {ids['sampled']} rows)"
        )
    return 0


def serve(args: argparse.Namespace) -> int:
    node = start_silo(args.config)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    names = ", ".join(sorted(node.ctx.config.datasets))
    if node.endpoints is not None:
        print(f"scoring endpoint on port {node.endpoints.http_port} (HTTP)", flush=True)
    print(f"silo '{node.ctx.party}' serving on {node.address} (datasets: {names})", flush=True)
    stop.wait()
    node.stop(grace=5)
    return 0


def _csv_path(name: str) -> Path:
    if name.startswith("demo:"):
        party = name[5:]
        if party not in DEMO_PARTIES:
            raise ConfigError(
                f"no demo data for party '{party}' (known: {', '.join(DEMO_PARTIES)})"
            )
        return DEMO_DATA_DIR / f"demo_{party}.csv.gz"
    return Path(name)


def load_csv(args: argparse.Namespace) -> int:
    """Load a CSV into the table a dataset of this silo names (for trying fedsilo, and docker)."""
    config = load_silo_config(args.config)
    steps = parse_id_normalisation(getattr(args, "normalize_ids", None))
    rows = load_csv_into_dataset(
        config,
        _csv_path(args.csv),
        args.dataset,
        replace=bool(getattr(args, "replace", False)),
        if_missing=args.if_missing,
        normalize_ids=steps,
    )
    name = args.dataset or next(iter(config.datasets))
    table = config.datasets[name].table
    if rows is None:
        print(f"{config.party}: table '{table}' exists; nothing loaded")
        return 0
    norm = f" (ids normalised: {','.join(steps)})" if steps else ""
    print(f"{config.party}: loaded {rows} rows into '{table}'{norm}")
    return 0
