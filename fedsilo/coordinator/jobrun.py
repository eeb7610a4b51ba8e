"""One running job at the coordinator: its silo clients, step sequence numbers and relay."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from fedsilo import settings
from fedsilo.coordinator.cancel import CancelScope
from fedsilo.coordinator.client import SiloClient
from fedsilo.coordinator.config import JobSpec
from fedsilo.coordinator.store import JobStore
from fedsilo.errors import FedsiloError, JobError
from fedsilo.message import Message, encode
from fedsilo.progress import NullProgress, Progress
from fedsilo.wire import Envelope, StepPayload

__all__ = ["Call", "JobRun"]

#: (method, meta, inbox envelopes) for one silo in :meth:`JobRun.call_many`
Call = tuple[str, dict[str, Any], list[Envelope]]


@dataclass
class JobRun:
    job_id: str
    spec: JobSpec
    clients: dict[str, SiloClient]
    store: JobStore
    progress: Progress = field(default_factory=NullProgress)
    resume: bool = False
    #: outputs of earlier steps (e.g. the alignment name PSI produced), for later steps
    results: dict[str, Any] = field(default_factory=dict)
    relayed_bytes: int = 0
    #: 0-based index of the step being run: names its training checkpoints at the silos
    step_index: int = 0
    #: set by ``fedsilo jobs cancel`` (through the store): calls stop, in-flight ones are cancelled
    cancel: CancelScope = field(default_factory=CancelScope)
    _seq: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def parties(self) -> list[str]:
        return sorted(self.spec.parties)

    @property
    def wire_spec(self) -> dict[str, Any]:
        """The job spec as the silos received it at OpenJob (what they authorise calls by)."""
        return self.spec.to_wire(self.job_id)

    def role(self, party: str) -> str:
        return str(self.spec.parties[party]["role"])

    def with_role(self, role: str) -> list[str]:
        return self.spec.parties_with_role(role)

    def active(self) -> str:
        actives = self.with_role("active")
        if len(actives) != 1:
            raise JobError(f"job '{self.spec.name}' needs exactly one label holder (role 'active')")
        return actives[0]

    def _next_seq(self, party: str) -> int:
        with self._lock:
            self._seq[party] = self._seq.get(party, 0) + 1
            return self._seq[party]

    def call(
        self,
        party: str,
        method: str,
        meta: dict[str, Any] | None = None,
        inbox: list[Envelope] | None = None,
        *,
        plain: Message | None = None,
        deadline: float = settings.STEP_DEADLINE_S,
    ) -> StepPayload:
        """Run one step at ``party``, relaying ``inbox`` (sealed envelopes addressed to it).

        A cancelled job raises JobCancelled here instead of calling (between calls and rounds),
        and a call in flight when it is cancelled ends at once with JobCancelled.
        """
        self.cancel.check(self.job_id)
        envelopes = list(inbox or [])
        for env in envelopes:
            if env.recipient != party:
                raise JobError(f"relay error: envelope for '{env.recipient}' sent to '{party}'")
        reply = self.clients[party].step(
            self.job_id,
            method,
            self._next_seq(party),
            # every call names the step of the job it belongs to: silos authorise it against
            # that step of the spec they accepted and read its parameters from there
            StepPayload(
                meta={**(meta or {}), "step": self.step_index}, envelopes=envelopes, plain=plain
            ),
            deadline=deadline,
            cancel=self.cancel,
        )
        # relayed: sealed envelopes in, plus the plain messages (ciphertexts the coordinator
        # aggregates) both ways; the sealed envelopes out are counted when relayed onwards
        carried = sum(len(e.sealed) for e in envelopes)
        carried += sum(len(encode(m)) for m in (plain, reply.plain) if m is not None)
        with self._lock:
            self.relayed_bytes += carried
        return reply

    def call_many(
        self, calls: dict[str, Call], *, plain: Message | None = None
    ) -> dict[str, StepPayload]:
        """Run steps at several silos concurrently (each given ``plain``, if any); the first
        failure is raised."""
        if len(calls) == 1:
            ((party, (method, meta, inbox)),) = calls.items()
            return {party: self.call(party, method, meta, inbox, plain=plain)}
        with ThreadPoolExecutor(max_workers=len(calls)) as pool:
            futures = {
                p: pool.submit(self.call, p, m, meta, inbox, plain=plain)
                for p, (m, meta, inbox) in calls.items()
            }
            errors: list[FedsiloError] = []
            out: dict[str, StepPayload] = {}
            for party, fut in futures.items():
                try:
                    out[party] = fut.result()
                except FedsiloError as err:
                    errors.append(err)
        if errors:
            raise errors[0]
        return out

    def cleanup_call(self, party: str, method: str) -> StepPayload:
        """A call that undoes what a failed or cancelled step wrote (``psi.abort``): made even
        after a cancellation, which it must not be stopped by."""
        return self.clients[party].step(
            self.job_id,
            method,
            self._next_seq(party),
            StepPayload(meta={"step": self.step_index}),
            deadline=settings.CONTROL_DEADLINE_S,
        )

    def log(self, message: str) -> None:
        self.store.add_event(self.job_id, message)
        self.progress.note(message)
