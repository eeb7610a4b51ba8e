"""`fedsilo silo serve|check`."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from sqlalchemy import inspect

from fedsilo.errors import ConfigError
from fedsilo.silo_node.config import load_silo_config
from fedsilo.silo_node.data import make_engine
from fedsilo.silo_node.demo_data import DEMO_DATA_DIR, DEMO_PARTIES, load_csv_into_table
from fedsilo.silo_node.node import open_context, start_silo


def check(args: argparse.Namespace) -> int:
    config = load_silo_config(args.config)
    ctx = open_context(config)
    for info in ctx.data.describe():
        label = f", label '{info.label}'" if info.label else ""
        print(
            f"{config.party}: dataset '{info.name}': {info.rows} rows, "
            f"{len(info.features)} features{label}"
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
    name = args.dataset or next(iter(config.datasets), None)
    if name is None or name not in config.datasets:
        raise ConfigError(f"{config.file_label}: no dataset '{name}'")
    ds = config.datasets[name]
    if ds.table is None:
        raise ConfigError(f"{config.file_label}: dataset '{name}' is a query, not a table")
    engine = make_engine(config.database_url)
    try:
        if args.if_missing and inspect(engine).has_table(ds.table, schema=ds.schema):
            print(f"{config.party}: table '{ds.table}' exists; nothing loaded")
            return 0
        rows = load_csv_into_table(engine, ds.table, _csv_path(args.csv), ds.id_column)
    finally:
        engine.dispose()
    print(f"{config.party}: loaded {rows} rows into '{ds.table}'")
    return 0
