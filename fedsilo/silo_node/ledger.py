"""The silo's audit ledger: a hash chain of what it sent, accepted and refused, anchored by heads.

Why it looks the way it does:

- Every entry is hashed (SHA-256 over its canonical JSON) together with the previous entry's
  hash; an entry is committed before the message it records leaves the silo (the dispatcher's
  job), so editing or deleting a middle row breaks :meth:`Ledger.verify`.
- The chain starts from a **per-silo genesis**, a hash over the party name and a random nonce
  drawn when the ledger is created: chains of two silos, or a chain rebuilt elsewhere, do not
  splice onto each other.
- A cut tail or a chain rebuilt from scratch cannot be seen from the chain alone, so at every
  job close the silo signs its head (:mod:`fedsilo.crypto.ledger_heads`) and the coordinator and
  the job's other parties keep it. :meth:`Ledger.check_head` then fails when the chain is
  shorter than a kept head (truncated) or differs at its seq (rewritten). The silo keeps its own
  heads and the heads its peers sent in ``fedsilo_ledger_heads``.
- Besides messages it records what the silo agreed to and refused: every accepted job (the
  spec's SHA-256, role, dataset, caller), every refused call (method, caller, the one-line reason
  the caller was told), every job close. These entries carry kinds ``job.accepted``,
  ``job.refused`` and ``job.closed`` (:data:`CONTROL_KINDS`).

Appends are serialised by a lock (threads of this process) and by the primary key on ``seq``
(another process racing for the same number fails and retries). There is deliberately no update
or delete method.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
)
from sqlalchemy.exc import IntegrityError, OperationalError

from fedsilo import leakage, settings
from fedsilo.crypto.ledger_heads import LedgerHead, SignedHead
from fedsilo.errors import DataError, FedsiloError, ProtocolError

__all__ = [
    "CONTROL_KINDS",
    "GENESIS_HASH",
    "LEDGER",
    "Genesis",
    "Ledger",
    "LedgerEntry",
    "ledger_metadata",
    "refuse",
    "spec_hash",
]

_MAX_NAME = 200
#: ``prev_hash`` of the first entry of a ledger written before per-silo genesis (legacy).
GENESIS_HASH = "0" * 64
_GENESIS_TAG = "fedsilo ledger genesis v1"
#: what the silo agreed to, refused, and closed: records, not messages to a peer.
CONTROL_KINDS = frozenset({"job.accepted", "job.refused", "job.closed"})
#: longest reason or caller text copied into an entry.
_MAX_TEXT = 400

ledger_metadata = MetaData()
LEDGER = Table(
    "fedsilo_ledger",
    ledger_metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("job_id", String(_MAX_NAME), nullable=False, index=True),
    Column("step", String(_MAX_NAME), nullable=False),
    Column("peer", String(_MAX_NAME), nullable=False),
    Column("kind", String(_MAX_NAME), nullable=False),
    Column("nbytes", BigInteger, nullable=False),
    Column("reveals", Text, nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)
LEDGER_GENESIS = Table(
    "fedsilo_ledger_genesis",
    ledger_metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),  # always 1: one per ledger
    Column("party", String(_MAX_NAME), nullable=False),
    Column("nonce", String(64), nullable=False),  # "" for a legacy ledger
    Column("hash", String(64), nullable=False),
    Column("created_at", String(40), nullable=False),
)
LEDGER_HEADS = Table(
    "fedsilo_ledger_heads",
    ledger_metadata,
    Column("party", String(_MAX_NAME), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("job_id", String(_MAX_NAME), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("statement", Text, nullable=False),
    Column("signature", Text, nullable=False),  # base64; "" when unsigned (plaintext)
    Column("certificate_pem", Text, nullable=False),
    Column("kept_at", String(40), nullable=False),
)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _name(what: str, value: str) -> str:
    if not isinstance(value, str) or not value or len(value) > _MAX_NAME:
        raise DataError(f"{what} must be a string of 1 to {_MAX_NAME} characters")
    return value


def _line(text: str) -> str:
    """One printable line of at most ``_MAX_TEXT`` characters (reasons, callers)."""
    flat = " ".join(str(text).split())
    return "".join(c if c.isprintable() else "?" for c in flat)[:_MAX_TEXT]


def _peer(name: str) -> str:
    return _line(name)[:_MAX_NAME] or leakage.COORDINATOR


def refuse(
    ledger: Ledger,
    err: FedsiloError,
    *,
    method: str,
    job_id: str,
    caller: str = leakage.COORDINATOR,
) -> FedsiloError:
    """Record ``err`` as a refusal of ``method`` in ``job_id`` and return it to be raised; the
    servicer's refusal hook then does not record it a second time (for step dispatch, which
    knows the job and step the hook cannot see)."""
    ledger.record_refusal(method=method, caller=caller, reason=str(err), job_id=job_id)
    err.ledger_recorded = True  # type: ignore[attr-defined]
    return err


def spec_hash(spec: dict[str, Any]) -> str:
    """SHA-256 of a job spec's canonical JSON: what a silo records as the spec it accepted."""
    text = json.dumps(
        spec, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _genesis_hash(party: str, nonce: str) -> str:
    fields = {"tag": _GENESIS_TAG, "party": party, "nonce": nonce}
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class Genesis:
    """Where a silo's chain starts; ``legacy`` for ledgers written before it existed."""

    party: str
    nonce: str
    hash: str

    @property
    def legacy(self) -> bool:
        return self.nonce == ""

    def valid(self) -> bool:
        if self.legacy:
            return self.hash == GENESIS_HASH
        return self.hash == _genesis_hash(self.party, self.nonce)


@dataclass(frozen=True)
class LedgerEntry:
    seq: int
    job_id: str
    step: str
    peer: str
    kind: str
    nbytes: int
    reveals: str
    created_at: str
    prev_hash: str
    hash: str

    def canonical(self) -> bytes:
        """The bytes the hash covers: every field but ``hash``, as sorted compact ASCII JSON."""
        fields = {
            k: getattr(self, k)
            for k in (
                "seq",
                "job_id",
                "step",
                "peer",
                "kind",
                "nbytes",
                "reveals",
                "created_at",
                "prev_hash",
            )
        }
        return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode(
            "ascii"
        )

    def computed_hash(self) -> str:
        return hashlib.sha256(self.canonical()).hexdigest()


def _is_contention(err: IntegrityError | OperationalError) -> bool:
    """Another writer took the sequence number or holds the lock: worth retrying."""
    if isinstance(err, IntegrityError):
        return True
    text = str(err.orig).lower()
    return "locked" in text or "busy" in text


def _entry(row: Any) -> LedgerEntry:
    return LedgerEntry(
        int(row.seq),
        row.job_id,
        row.step,
        row.peer,
        row.kind,
        int(row.nbytes),
        row.reveals,
        row.created_at,
        row.prev_hash,
        row.hash,
    )


def _signed(row: Any) -> SignedHead:
    return SignedHead(
        row.statement.encode("ascii"), base64.b64decode(row.signature), row.certificate_pem
    )


class Ledger:
    """Append-only, hash-chained record of what this silo sent, accepted and refused."""

    def __init__(self, engine: Engine, party: str | None = None) -> None:
        self.engine = engine
        self.party = party
        self._lock = threading.Lock()

    def create_tables(self) -> None:
        """Create the ledger's tables if missing (``audit`` may run on an older database)."""
        ledger_metadata.create_all(self.engine)

    # --- genesis --------------------------------------------------------------------------------
    def genesis(self) -> Genesis:
        """This ledger's genesis, drawn (or, for a legacy ledger, recorded) on first use."""
        with self.engine.begin() as conn:
            return self._genesis(conn)

    def _genesis(self, conn: Any) -> Genesis:
        row = conn.execute(select(LEDGER_GENESIS).where(LEDGER_GENESIS.c.id == 1)).first()
        if row is not None:
            return Genesis(row.party, row.nonce, row.hash)
        party = self.party or "unnamed"
        legacy = conn.execute(select(LEDGER.c.seq).limit(1)).first() is not None
        nonce = "" if legacy else secrets.token_hex(32)
        made = Genesis(party, nonce, GENESIS_HASH if legacy else _genesis_hash(party, nonce))
        conn.execute(
            insert(LEDGER_GENESIS).values(
                id=1, party=made.party, nonce=made.nonce, hash=made.hash, created_at=_now()
            )
        )
        return made

    def _stored_genesis(self, conn: Any) -> Genesis | None:
        row = conn.execute(select(LEDGER_GENESIS).where(LEDGER_GENESIS.c.id == 1)).first()
        return None if row is None else Genesis(row.party, row.nonce, row.hash)

    # --- appends --------------------------------------------------------------------------------
    def append(
        self, job_id: str, step: str, peer: str, kind: str, nbytes: int, reveals: str
    ) -> LedgerEntry:
        """Commit one entry and return it; the caller sends the message only afterwards."""
        for what, value in (("job id", job_id), ("step", step), ("peer", peer), ("kind", kind)):
            _name(f"ledger {what}", value)
        with self._lock:
            for attempt in range(settings.LEDGER_APPEND_RETRIES):
                try:
                    return self._append_once(job_id, step, peer, kind, int(nbytes), str(reveals))
                except (IntegrityError, OperationalError) as err:
                    if not _is_contention(err):
                        raise DataError(f"cannot append to the audit ledger ({err.orig})") from None
                    time.sleep(settings.RETRY_BACKOFF_S * (2**attempt))
        raise DataError("could not append to the audit ledger (database busy)")

    def _append_once(
        self, job_id: str, step: str, peer: str, kind: str, nbytes: int, reveals: str
    ) -> LedgerEntry:
        with self.engine.begin() as conn:
            last = conn.execute(
                select(LEDGER.c.seq, LEDGER.c.hash).order_by(LEDGER.c.seq.desc()).limit(1)
            ).first()
            if last is None:
                seq, prev = 1, self._genesis(conn).hash
            else:
                seq, prev = int(last.seq) + 1, last.hash
            draft = LedgerEntry(seq, job_id, step, peer, kind, nbytes, reveals, _now(), prev, "")
            entry = LedgerEntry(**{**draft.__dict__, "hash": draft.computed_hash()})
            conn.execute(insert(LEDGER).values(**entry.__dict__))
        return entry

    def record_accepted(
        self,
        *,
        job_id: str,
        spec: dict[str, Any],
        role: str,
        dataset: str,
        caller: str,
        peer: str = leakage.COORDINATOR,
        resume: bool = False,
    ) -> LedgerEntry:
        """Record a job this silo accepted at OpenJob: the spec by its hash, and who asked
        (``caller`` as text; ``peer``: who the answer went to, the entry's peer column)."""
        digest = spec_hash(spec)
        how = "resumed" if resume else "accepted"
        return self.append(
            job_id,
            "OpenJob",
            _peer(peer),
            "job.accepted",
            len(json.dumps(spec)),
            f"{how} job spec sha256:{digest} as {_line(role)} on dataset "
            f"'{_line(dataset)}', asked by {_line(caller)}",
        )

    def record_refusal(
        self,
        *,
        method: str,
        caller: str,
        reason: str,
        job_id: str = "",
        peer: str = leakage.COORDINATOR,
    ) -> LedgerEntry:
        """Record a refused call: the method, who called, and the one-line reason it was told
        (the reason already left the silo in the error status; nothing else is added)."""
        said = _line(reason)
        return self.append(
            _line(job_id)[:_MAX_NAME] or "-",
            _line(method)[:_MAX_NAME] or "?",
            _peer(peer),
            "job.refused",
            len(said),
            f"refused {_line(method)} asked by {_line(caller)}: {said}",
        )

    def record_close(
        self,
        *,
        job_id: str,
        caller: str,
        failed: bool,
        reason: str = "",
        peer: str = leakage.COORDINATOR,
    ) -> LedgerEntry:
        """Record a job close (the head signed at close covers this entry)."""
        outcome = f"failed: {_line(reason)}" if failed else "succeeded"
        return self.append(
            job_id,
            "CloseJob",
            _peer(peer),
            "job.closed",
            0,
            f"job closed by {_line(caller)} ({outcome})",
        )

    # --- reading and verifying -------------------------------------------------------------------
    def entries(self, job_id: str | None = None) -> list[LedgerEntry]:
        stmt = select(LEDGER).order_by(LEDGER.c.seq)
        if job_id is not None:
            stmt = stmt.where(LEDGER.c.job_id == job_id)
        with self.engine.connect() as conn:
            return [_entry(r) for r in conn.execute(stmt)]

    def took_part(self, job_id: str) -> bool:
        """Whether this ledger has any entry for ``job_id`` (accepted, refused, sent)."""
        with self.engine.connect() as conn:
            stmt = select(LEDGER.c.seq).where(LEDGER.c.job_id == job_id).limit(1)
            return conn.execute(stmt).first() is not None

    def head(self) -> tuple[int, str]:
        """``(seq, hash)`` of the last entry (``(0, genesis hash)`` when empty)."""
        with self.engine.begin() as conn:
            last = conn.execute(
                select(LEDGER.c.seq, LEDGER.c.hash).order_by(LEDGER.c.seq.desc()).limit(1)
            ).first()
            if last is None:
                return 0, self._genesis(conn).hash
        return int(last.seq), last.hash

    def verify(self) -> tuple[bool, int | None]:
        """Walk the chain in order: ``(True, None)`` or ``(False, first bad seq)``.

        Seq 0 is the genesis: bad when its hash does not match its party and nonce, or names
        another party. A row is bad if its seq is not the next number, its ``prev_hash`` is not
        the previous row's hash, or its own hash does not match its fields. Streams: memory
        stays bounded.
        """
        with self.engine.connect() as conn:
            genesis = self._stored_genesis(conn)
            if genesis is not None and (
                not genesis.valid() or (self.party is not None and genesis.party != self.party)
            ):
                return False, 0
            expected_seq = 1
            expected_prev = GENESIS_HASH if genesis is None else genesis.hash
            stmt = select(LEDGER).order_by(LEDGER.c.seq)
            result = conn.execution_options(yield_per=settings.READ_CHUNK_ROWS).execute(stmt)
            for row in result:
                entry = _entry(row)
                if (
                    entry.seq != expected_seq
                    or entry.prev_hash != expected_prev
                    or entry.computed_hash() != entry.hash
                ):
                    return False, entry.seq
                expected_seq, expected_prev = entry.seq + 1, entry.hash
        return True, None

    def check_head(self, head: LedgerHead) -> None:
        """DataError unless this (verified) chain extends ``head``: same party and genesis, an
        entry at ``head.seq`` (else truncated) with ``head.hash`` (else rewritten)."""
        where = f"signed head seq {head.seq} (job '{head.job_id[:60]}')"
        if self.party is not None and head.party != self.party:
            raise DataError(f"{where} is a head of '{head.party[:40]}', not of '{self.party}'")
        seq, _ = self.head()
        if head.genesis != self.genesis().hash:
            raise DataError(f"audit ledger rewritten: its genesis is not the one of {where}")
        if head.seq > seq:
            raise DataError(f"audit ledger truncated: {where} but the chain ends at {seq}")
        if head.seq == 0:
            return
        with self.engine.connect() as conn:
            found = conn.execute(select(LEDGER.c.hash).where(LEDGER.c.seq == head.seq)).scalar()
        if found != head.hash:
            raise DataError(f"audit ledger rewritten: entry {head.seq} differs from {where}")

    def find_seq(self, hash_: str) -> int | None:
        """The seq of the entry with this hash (to check a bare hash given by hand)."""
        with self.engine.connect() as conn:
            found = conn.execute(select(LEDGER.c.seq).where(LEDGER.c.hash == hash_)).scalar()
        return None if found is None else int(found)

    # --- signed heads ---------------------------------------------------------------------------
    def keep_head(self, signed: SignedHead) -> bool:
        """Keep a signed head (own or a peer's; verify peers' before); False if already kept.

        Two different heads of one party at one seq prove that party's ledger was rewritten:
        ProtocolError, and the first one stays.
        """
        head = signed.head
        row = {
            "party": head.party,
            "seq": head.seq,
            "job_id": head.job_id[:_MAX_NAME],
            "hash": head.hash,
            "statement": signed.statement.decode("ascii"),
            "signature": base64.b64encode(signed.signature).decode("ascii"),
            "certificate_pem": signed.certificate_pem,
            "kept_at": _now(),
        }
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(LEDGER_HEADS).values(**row))
            return True
        except IntegrityError:
            pass
        where = (LEDGER_HEADS.c.party == head.party) & (LEDGER_HEADS.c.seq == head.seq)
        with self.engine.connect() as conn:
            kept = conn.execute(select(LEDGER_HEADS.c.hash).where(where)).scalar()
        if kept != head.hash:
            raise ProtocolError(
                f"ledger head of '{head.party[:40]}' at seq {head.seq} "
                "conflicts with one kept earlier: its ledger was rewritten"
            )
        return False

    def heads(self, party: str | None = None) -> list[SignedHead]:
        """Kept heads (of ``party``, or all), by party then seq."""
        stmt = select(LEDGER_HEADS).order_by(LEDGER_HEADS.c.party, LEDGER_HEADS.c.seq)
        if party is not None:
            stmt = stmt.where(LEDGER_HEADS.c.party == party)
        with self.engine.connect() as conn:
            return [_signed(r) for r in conn.execute(stmt)]

    def latest_head(self, party: str | None = None) -> SignedHead | None:
        """The kept head with the highest seq of ``party`` (default: this silo)."""
        who = party or self.party
        if who is None:
            return None
        stmt = (
            select(LEDGER_HEADS)
            .where(LEDGER_HEADS.c.party == who)
            .order_by(LEDGER_HEADS.c.seq.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(stmt).first()
        return None if row is None else _signed(row)
