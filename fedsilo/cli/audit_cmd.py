"""`fedsilo audit [verify] --silo CONFIG [--job ID] [--summary]`: what this silo disclosed."""

from __future__ import annotations

import argparse
import textwrap
from collections import defaultdict

from fedsilo.errors import DataError
from fedsilo.silo_node.config import load_silo_config
from fedsilo.silo_node.node import make_engine
from fedsilo.silo_node.store import Ledger, LedgerEntry


def _print_entries(entries: list[LedgerEntry]) -> None:
    """One line per message sent, then what it revealed, indented."""
    for e in entries:
        print(f"{e.seq:>6}  {e.created_at[:19]}  {e.job_id}  {e.step} -> {e.peer}  "
              f"{e.kind}  {e.nbytes:,} B")
        print(textwrap.fill(e.reveals, width=100, initial_indent="        reveals: ",
                            subsequent_indent="                 "))


def _print_summary(entries: list[LedgerEntry]) -> None:
    """Messages and bytes per (job, recipient, kind): what went where, at a glance."""
    totals: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    reveals: dict[str, str] = {}
    for e in entries:
        row = totals[(e.job_id, e.peer, e.kind)]
        row[0] += 1
        row[1] += e.nbytes
        # released meta carries its values after ": {"; the summary keeps the general text
        reveals.setdefault(e.kind, e.reveals.split(": {", 1)[0])
    print(f"{'job':<36} {'to':<14} {'kind':<28} {'messages':>8} {'bytes':>14}")
    for (job, peer, kind), (count, nbytes) in sorted(totals.items()):
        print(f"{job:<36} {peer:<14} {kind:<28} {count:>8} {nbytes:>14,}")
    print("\nwhat each kind reveals:")
    for kind, text in sorted(reveals.items()):
        print(textwrap.fill(text, width=96, initial_indent=f"  {kind}: ",
                            subsequent_indent="      "))


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
    entries = ledger.entries(args.job)
    print(f"audit ledger of silo '{config.party}': {len(entries)} messages sent")
    (_print_summary if args.summary else _print_entries)(entries)
    return 0
