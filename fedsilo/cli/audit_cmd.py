"""`fedsilo audit [verify] --silo CONFIG [--job ID]`: what this silo disclosed, and to whom."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from fedsilo.errors import DataError
from fedsilo.silo_node.config import load_silo_config
from fedsilo.silo_node.node import make_engine
from fedsilo.silo_node.store import Ledger


def audit(args: argparse.Namespace) -> int:
    config = load_silo_config(args.silo)
    ledger = Ledger(make_engine(config))
    if args.action == "verify":
        ok, bad = ledger.verify()
        if not ok:
            raise DataError(f"{config.file_label}: audit ledger tampered at entry {bad}")
        seq, head = ledger.head()
        print(f"{config.party}: audit ledger intact ({seq} entries, head {head[:16]})")
        return 0
    table = Table(title=f"audit ledger of silo '{config.party}'", show_lines=False)
    for col in ("seq", "time", "job", "step", "to", "kind", "bytes", "reveals"):
        table.add_column(col, overflow="fold")
    for e in ledger.entries(args.job):
        table.add_row(
            str(e.seq), e.created_at, e.job_id, e.step, e.peer, e.kind, str(e.nbytes), e.reveals
        )
    Console().print(table)
    return 0
