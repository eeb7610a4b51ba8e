"""Job sessions held in a silo node's memory while a job runs.

A session holds the job spec the silo accepted, its role, its per-job keys and the protocol state
(gradients, keys, bins). Steps for one session run one at a time (a lock) and in order: each
carries a sequence number that must exceed the last one, so a replayed or reordered step is
refused. Results that must survive a restart (alignments, model parts, checkpoints) are written to
the silo's database by the steps themselves; a restarted silo has no sessions.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from fedsilo import settings
from fedsilo.crypto.sealing import JobKeys
from fedsilo.errors import ConfigError, LimitExceeded, NotFound, ProtocolError
from fedsilo.jobschema import check_step

__all__ = [
    "JobSession",
    "SessionTable",
    "check_job_id",
    "check_spec_shape",
    "current_caller",
    "spec_hash",
]

#: longest job id a silo accepts: the id columns of its own tables hold 200 characters.
MAX_JOB_ID_CHARS = 200
#: who is calling: set per call by the server's admission check (``silo_node/limits.py``), so a
#: new session is counted against its caller; "local" outside any call (local runs, tests).
current_caller: ContextVar[str] = ContextVar("fedsilo_caller", default="local")


def check_job_id(job_id: str) -> str:
    """Refuse job ids the silo's tables and logs cannot hold (empty, too long, control chars)."""
    if not 0 < len(job_id) <= MAX_JOB_ID_CHARS or not job_id.isprintable():
        raise ProtocolError(f"job id must be 1 to {MAX_JOB_ID_CHARS} printable characters")
    return job_id


def check_spec_shape(spec: dict[str, Any]) -> None:
    """Refuse a job spec whose shape the session and policy code could trip over.

    The coordinator validated the spec from TOML, but a silo cannot trust that: this is the
    silo's own check of the structure every later reader assumes (``parties`` a table of tables
    with string ``role``/``dataset`` and optional string ``columns``; ``steps`` a list of tables
    with a string ``kind``), and every step against its kind's schema (keys, types, bounds; the
    same code the coordinator runs). Meaning (roles, datasets, policy) is checked by
    ``open_session``.
    """
    parties = spec.get("parties")
    if not isinstance(parties, dict):
        raise ProtocolError("job spec: 'parties' must be a table of parties")
    for name, entry in parties.items():
        if not isinstance(entry, dict) or not all(
            isinstance(entry.get(k, ""), str) for k in ("role", "dataset")
        ):
            raise ProtocolError(f"job spec: party '{name[:40]}' needs string role and dataset")
        columns = entry.get("columns", [])
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise ProtocolError(f"job spec: columns of party '{name[:40]}' must be strings")
    steps = spec.get("steps", [])
    if not isinstance(steps, list) or not all(
        isinstance(e, dict) and isinstance(e.get("kind"), str) for e in steps
    ):
        raise ProtocolError("job spec: 'steps' must be a list of tables with a string 'kind'")
    try:
        for index, entry in enumerate(steps):  # the coordinator's schema check, made again
            check_step(entry, index)
    except ConfigError as err:
        raise ProtocolError(f"job spec: {err}") from None


def spec_hash(spec: dict[str, Any]) -> str:
    """SHA-256 over the canonical JSON of a job spec: what the silo accepted, by value."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


@dataclass
class JobSession:
    job_id: str
    spec: dict[str, Any]
    role: str
    dataset: str
    resume: bool = False
    keys: JobKeys = field(default_factory=JobKeys)
    state: dict[str, Any] = field(default_factory=dict)
    last_seq: int = 0
    last_used: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: the caller identity that opened the session (what the per-caller session cap counts)
    caller: str = field(default_factory=current_caller.get)

    @property
    def parties(self) -> dict[str, dict[str, Any]]:
        return dict(self.spec.get("parties", {}))

    def active_party(self, protocol: str) -> str:
        """The job's one label holder; ``protocol`` names who needs it in the error."""
        actives = self.party_with_role("active")
        if len(actives) != 1:
            raise ProtocolError(f"{protocol} needs exactly one label holder (role 'active')")
        return actives[0]

    def party_with_role(self, role: str) -> list[str]:
        return sorted(p for p, v in self.parties.items() if v.get("role") == role)

    def advance(self, seq: int) -> None:
        """Accept step number ``seq`` or refuse it as replayed / out of order."""
        if seq <= self.last_seq:
            raise ProtocolError(f"step {seq} of job '{self.job_id}' is replayed or out of order")
        self.last_seq = seq
        self.last_used = time.monotonic()


class SessionTable:
    """Thread-safe map of open sessions, dropping idle ones."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, JobSession] = {}

    def add(self, session: JobSession) -> None:
        with self._lock:
            self._expire()
            self._check_room(session)
            self._sessions[session.job_id] = session

    def find(self, job_id: str) -> JobSession | None:
        """The open (not expired) session of ``job_id``, or None."""
        with self._lock:
            self._expire()
            return self._sessions.get(job_id)

    def get(self, job_id: str) -> JobSession:
        with self._lock:
            try:
                return self._sessions[job_id]
            except KeyError:
                raise NotFound(f"job '{job_id[:64]}' is not open at this silo") from None

    def close(self, job_id: str) -> None:
        with self._lock:
            self._sessions.pop(job_id, None)

    def _check_room(self, session: JobSession) -> None:
        """Refuse a new session beyond the caps on open sessions, per caller and in total (idle
        ones are expired first): each holds keys and protocol state in the silo's memory."""
        others = [s for k, s in self._sessions.items() if k != session.job_id]
        if len(others) >= settings.MAX_OPEN_SESSIONS:
            raise LimitExceeded(
                f"{len(others)} job sessions open, the most this silo keeps (MAX_OPEN_SESSIONS); "
                "close a job first"
            )
        mine = sum(1 for s in others if s.caller == session.caller)
        if mine >= settings.MAX_OPEN_SESSIONS_PER_CALLER:
            raise LimitExceeded(
                f"{mine} job sessions open for '{session.caller}', the most this silo keeps per "
                "caller (MAX_OPEN_SESSIONS_PER_CALLER); close a job first"
            )

    def _expire(self) -> None:
        now = time.monotonic()
        idle = [
            k
            for k, s in self._sessions.items()
            if now - s.last_used > settings.SESSION_IDLE_TIMEOUT_S
        ]
        for key in idle:
            del self._sessions[key]
