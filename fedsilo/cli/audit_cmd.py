"""`fedsilo audit [verify|head|heads] --silo CONFIG`: what this silo disclosed, accepted, refused.

``verify`` walks the hash chain from the silo's genesis, then checks that the chain extends the
latest signed head the silo kept and, with ``--expect-head``, a head kept elsewhere (the
coordinator's copy, a peer's, or an export of ``audit head``): a cut tail or a rewritten chain
fails with one line and a non-zero exit.
"""

from __future__ import annotations

import argparse
import json
import re
import textwrap
from collections import defaultdict
from pathlib import Path

from cryptography import x509
from sqlalchemy import inspect

from fedsilo.cli.output import print_json
from fedsilo.crypto.certs import load_certificate
from fedsilo.crypto.ledger_heads import LedgerHead, SignedHead, verify_head
from fedsilo.errors import DataError, FedsiloError, NotFound
from fedsilo.silo_node.config import SiloConfig, load_silo_config
from fedsilo.silo_node.ledger import CONTROL_KINDS, Ledger, LedgerEntry
from fedsilo.silo_node.node import make_engine

_SEQ_HASH = re.compile(r"(?:(\d+):)?([0-9a-f]{64})\Z")


def _print_entries(entries: list[LedgerEntry]) -> None:
    """One line per entry, then what it revealed (messages) or what it records (control)."""
    for e in entries:
        print(
            f"{e.seq:>6}  {e.created_at[:19]}  {e.job_id}  {e.step} -> {e.peer}  "
            f"{e.kind}  {e.nbytes:,} B"
        )
        label = "record" if e.kind in CONTROL_KINDS else "reveals"
        print(
            textwrap.fill(
                e.reveals,
                width=100,
                initial_indent=f"        {label}: ",
                subsequent_indent="                 ",
            )
        )


def _entry_dict(e: LedgerEntry) -> dict[str, object]:
    return {
        "seq": e.seq,
        "created_at": e.created_at,
        "job_id": e.job_id,
        "step": e.step,
        "peer": e.peer,
        "kind": e.kind,
        "bytes": e.nbytes,
        "reveals": e.reveals,
        "hash": e.hash,
    }


def _summarise(
    entries: list[LedgerEntry],
) -> tuple[dict[tuple[str, str, str], list[int]], dict[str, str]]:
    """Messages and bytes per (job, recipient, kind), and what each message kind reveals."""
    totals: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    reveals: dict[str, str] = {}
    for e in entries:
        row = totals[(e.job_id, e.peer, e.kind)]
        row[0] += 1
        row[1] += e.nbytes
        if e.kind not in CONTROL_KINDS:
            # released meta carries its values after ": {"; the summary keeps the general text
            reveals.setdefault(e.kind, e.reveals.split(": {", 1)[0])
    return totals, reveals


def _summary_json(party: str, entries: list[LedgerEntry]) -> dict[str, object]:
    totals, reveals = _summarise(entries)
    rows = [
        {"job_id": job, "to": peer, "kind": kind, "messages": count, "bytes": nbytes}
        for (job, peer, kind), (count, nbytes) in sorted(totals.items())
    ]
    return {"party": party, "totals": rows, "reveals": dict(sorted(reveals.items()))}


def _print_summary(entries: list[LedgerEntry]) -> None:
    """Messages and bytes per (job, recipient, kind): what went where, at a glance."""
    totals, reveals = _summarise(entries)
    print(f"{'job':<36} {'to':<14} {'kind':<28} {'messages':>8} {'bytes':>14}")
    for (job, peer, kind), (count, nbytes) in sorted(totals.items()):
        print(f"{job:<36} {peer:<14} {kind:<28} {count:>8} {nbytes:>14,}")
    print("\nwhat each kind reveals:")
    for kind, text in sorted(reveals.items()):
        print(
            textwrap.fill(text, width=96, initial_indent=f"  {kind}: ", subsequent_indent="      ")
        )


def _ca(config: SiloConfig) -> x509.Certificate | None:
    """The silo's consortium CA, to check signed heads; None in plaintext mode."""
    if config.tls.insecure_plaintext or not config.tls.ca:
        return None
    return load_certificate(config.tls.ca, "CA certificate")


def _expected(text: str, ledger: Ledger) -> tuple[LedgerHead, SignedHead | None]:
    """``--expect-head``: a JSON file of a signed head, ``SEQ:HASH``, or a bare ``HASH``."""
    found = _SEQ_HASH.match(text.strip().lower())
    if found is None:
        path = Path(text)
        if not path.is_file():
            raise DataError(f"--expect-head {text[:80]!r} is neither a file nor SEQ:HASH")
        signed = SignedHead.from_json(path.read_text())
        return signed.head, signed
    seq_text, hash_ = found.groups()
    seq = int(seq_text) if seq_text is not None else ledger.find_seq(hash_)
    if seq is None:
        raise DataError(f"audit ledger truncated or rewritten: no entry has hash {hash_[:16]}")
    party = ledger.party or ""
    return LedgerHead(party, "given", seq, hash_, ledger.genesis().hash, ""), None


def _check(
    what: str,
    head: LedgerHead,
    signed: SignedHead | None,
    ledger: Ledger,
    ca: x509.Certificate | None,
) -> str:
    """Check one head against the chain; returns how it was vouched for."""
    how = "given by hand"
    if signed is not None and signed.signed and ca is not None:
        verify_head(ca, signed)
        how = "signature verified"
    elif signed is not None:
        how = "UNSIGNED (insecure_plaintext)" if not signed.signed else "signature not checked"
    ledger.check_head(head)
    return f"{what} #{head.seq} (job {head.job_id}, {how})"


def _verify(config: SiloConfig, ledger: Ledger, args: argparse.Namespace) -> int:
    ok, bad = ledger.verify()
    if not ok:
        where = "its genesis" if bad == 0 else f"entry {bad}"
        raise DataError(f"{config.file_label}: audit ledger tampered at {where}")
    ca, matched = _ca(config), []
    anchors: list[tuple[str, LedgerHead, SignedHead | None]] = []
    own = ledger.latest_head()
    if own is not None:
        anchors.append(("latest signed head kept here", own.head, own))
    if args.expect_head:
        anchors.append(("expected head", *_expected(args.expect_head, ledger)))
    try:
        matched = [_check(what, head, signed, ledger, ca) for what, head, signed in anchors]
    except FedsiloError as err:
        raise type(err)(f"{config.file_label}: {err}") from None
    seq, head = ledger.head()
    if args.json:
        doc = {"party": config.party, "intact": True, "entries": seq, "head": head}
        print_json({**doc, "anchors": matched})
        return 0
    print(f"{config.party}: audit ledger intact ({seq} entries, head {head[:16]})")
    for line in matched or ["no signed head yet: a cut tail cannot be detected"]:
        print(f"  {line}")
    return 0


def _head(config: SiloConfig, ledger: Ledger, args: argparse.Namespace) -> int:
    signed = ledger.latest_head(args.party)
    if signed is None:
        raise NotFound(
            f"{config.file_label}: no signed ledger head of "
            f"'{args.party or config.party}' kept yet (heads are signed at job close)"
        )
    if args.json:  # the same head, as an indented document
        print_json(json.loads(signed.to_json()))
        return 0
    print(signed.to_json())
    return 0


def _heads(config: SiloConfig, ledger: Ledger, args: argparse.Namespace) -> int:
    kept = ledger.heads(args.party)
    if args.json:
        heads = [{**signed.head.__dict__, "signed": signed.signed} for signed in kept]
        print_json({"party": config.party, "heads": heads})
        return 0
    print(f"ledger heads kept by silo '{config.party}': {len(kept)}")
    for signed in kept:
        h = signed.head
        mark = "signed" if signed.signed else "UNSIGNED"
        print(f"  {h.party:<16} #{h.seq:<8} {h.hash[:16]}  {mark:<8}  {h.signed_at}  {h.job_id}")
    return 0


def _open_ledger(config: SiloConfig) -> Ledger:
    """The silo's ledger; its newer tables are added to a database written before them."""
    engine = make_engine(config)
    if not inspect(engine).has_table("fedsilo_ledger"):
        raise DataError(f"{config.file_label}: the database has no audit ledger yet")
    ledger = Ledger(engine, config.party)
    ledger.create_tables()
    return ledger


def audit(args: argparse.Namespace) -> int:
    config = load_silo_config(args.silo)
    ledger = _open_ledger(config)
    actions = {"verify": _verify, "head": _head, "heads": _heads}
    if args.action in actions:
        return actions[args.action](config, ledger, args)
    entries = ledger.entries(args.job)
    if args.json:
        doc = _summary_json(config.party, entries) if args.summary else None
        print_json(doc or {"party": config.party, "entries": [_entry_dict(e) for e in entries]})
        return 0
    print(
        f"audit ledger of silo '{config.party}': {len(entries)} entries "
        "(messages sent, jobs accepted and closed, calls refused)"
    )
    (_print_summary if args.summary else _print_entries)(entries)
    return 0
