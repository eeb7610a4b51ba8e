"""Job sessions held in a silo node's memory while a job runs.

A session holds the job spec the silo accepted, its role, its per-job keys and the protocol state
(gradients, keys, bins). Steps for one session run one at a time (a lock) and in order: each
carries a sequence number that must exceed the last one, so a replayed or reordered step is
refused. Results that must survive a restart (alignments, model parts, checkpoints) are written to
the silo's database by the steps themselves; a restarted silo has no sessions.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from fedsilo import settings
from fedsilo.crypto.sealing import JobKeys
from fedsilo.errors import NotFound, ProtocolError

__all__ = ["JobSession", "SessionTable"]


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

    @property
    def parties(self) -> dict[str, dict[str, Any]]:
        return dict(self.spec.get("parties", {}))

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
            self._sessions[session.job_id] = session

    def get(self, job_id: str) -> JobSession:
        with self._lock:
            try:
                return self._sessions[job_id]
            except KeyError:
                raise NotFound(f"job '{job_id[:64]}' is not open at this silo") from None

    def close(self, job_id: str) -> None:
        with self._lock:
            self._sessions.pop(job_id, None)

    def _expire(self) -> None:
        now = time.monotonic()
        idle = [k for k, s in self._sessions.items()
                if now - s.last_used > settings.SESSION_IDLE_TIMEOUT_S]
        for key in idle:
            del self._sessions[key]
