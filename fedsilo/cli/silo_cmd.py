"""`fedsilo silo serve|check`."""

from __future__ import annotations

import argparse
import signal
import threading

from fedsilo.silo_node.config import load_silo_config
from fedsilo.silo_node.node import open_context, start_silo


def check(args: argparse.Namespace) -> int:
    config = load_silo_config(args.config)
    ctx = open_context(config)
    for info in ctx.data.describe():
        label = f", label '{info.label}'" if info.label else ""
        print(f"{config.party}: dataset '{info.name}': {info.rows} rows, "
              f"{len(info.features)} features{label}")
    return 0


def serve(args: argparse.Namespace) -> int:
    node = start_silo(args.config)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    names = ", ".join(sorted(node.ctx.config.datasets))
    print(f"silo '{node.ctx.party}' serving on {node.address} (datasets: {names})", flush=True)
    stop.wait()
    node.stop(grace=5)
    return 0
