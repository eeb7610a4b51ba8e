"""Cancelling a running job: a flag its driver checks between calls, and its in-flight calls.

``fedsilo jobs cancel ID`` writes a request into the coordinator's store
(:meth:`JobStore.request_cancel`); a :class:`CancelWatch` thread of the process running the job
polls for it and sets the job's :class:`CancelScope`, which cancels every call in flight. From then
on :meth:`JobRun.call <fedsilo.coordinator.jobrun.JobRun.call>` raises :class:`JobCancelled`
instead of calling, so the driver stops at its next call, the orchestrator closes the job at
every silo and records it ``cancelled``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol

from fedsilo import settings
from fedsilo.errors import JobCancelled

if TYPE_CHECKING:
    from fedsilo.coordinator.store import JobStore

__all__ = ["CANCELLED_REASON", "CancelScope", "CancelWatch"]

log = logging.getLogger(__name__)
CANCELLED_REASON = "cancelled by an operator (fedsilo jobs cancel)"


class _Cancellable(Protocol):
    def cancel(self) -> bool: ...


class CancelScope:
    """A job's cancel flag and the calls it would cancel (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: set[_Cancellable] = set()
        self._set = threading.Event()

    @property
    def cancelled(self) -> bool:
        return self._set.is_set()

    def cancel(self) -> None:
        """Set the flag and cancel every call in flight (each then fails at once)."""
        with self._lock:
            self._set.set()
            calls = list(self._calls)
        for call in calls:
            call.cancel()

    def check(self, job_id: str) -> None:
        """Raise JobCancelled if the job was cancelled: a driver's calls stop here."""
        if self.cancelled:
            raise JobCancelled(f"job '{job_id}' {CANCELLED_REASON}")

    @contextmanager
    def track(self, call: _Cancellable) -> Iterator[None]:
        """Keep ``call`` cancellable while it runs; one started after the flag is cancelled."""
        with self._lock:
            self._calls.add(call)
            late = self._set.is_set()
        if late:
            call.cancel()
        try:
            yield
        finally:
            with self._lock:
                self._calls.discard(call)


class CancelWatch:
    """Poll the store for a cancel request of ``job_id`` and set ``scope`` when there is one."""

    def __init__(self, store: JobStore, job_id: str, scope: CancelScope) -> None:
        self._store, self._job_id, self._scope = store, job_id, scope
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"cancel-{job_id}")

    def __enter__(self) -> CancelWatch:
        if self._store.cancel_requested(self._job_id):  # cancelled while queued: seen at once
            self._scope.cancel()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=settings.CANCEL_POLL_S * 4)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self._store.cancel_requested(self._job_id):
                    self._scope.cancel()
                    return
            except Exception:  # a store hiccup must not end the job; the next poll retries
                log.debug("cancel flag of job %s not read", self._job_id, exc_info=True)
            self._stop.wait(settings.CANCEL_POLL_S)
