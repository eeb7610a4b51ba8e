"""A job's progress, kept in the coordinator's store so that other processes can show it.

:class:`RecordedProgress` wraps what the caller shows (a rich display, or nothing) and writes
every task's state, with its elapsed time and estimated time left, to the job's row (at most every
``settings.PROGRESS_WRITE_S``; a task's end at once). ``fedsilo run --coordinator`` and
``fedsilo jobs logs --follow`` read it from there (``WatchJob``).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from fedsilo import settings
from fedsilo.coordinator.store import JobStore
from fedsilo.progress import Progress, ProgressTask

__all__ = ["RecordedProgress", "eta_s"]

log = logging.getLogger(__name__)


def eta_s(completed: float, total: float | None, elapsed: float) -> float | None:
    """Seconds left at the average rate so far; None while unknown."""
    if not total or completed <= 0 or elapsed <= 0:
        return None
    return max(0.0, elapsed * (total - completed) / completed)


class _Task:
    def __init__(self, owner: RecordedProgress, number: int, inner: ProgressTask) -> None:
        self._owner, self._number, self._inner = owner, number, inner

    def advance(self, amount: float = 1) -> None:
        self._inner.advance(amount)
        self._owner.advanced(self._number, amount)

    def finish(self) -> None:
        self._inner.finish()
        self._owner.finished(self._number)


class RecordedProgress:
    """Shows progress through ``inner`` and records it in ``store`` for job ``job_id``."""

    def __init__(self, store: JobStore, job_id: str, inner: Progress) -> None:
        self._store, self._job_id, self._inner = store, job_id, inner
        self._lock = threading.Lock()
        self._tasks: list[dict[str, Any]] = []
        self._written = 0.0

    def task(self, description: str, total: float | None = None) -> ProgressTask:
        with self._lock:
            number = len(self._tasks)
            self._tasks.append(
                {
                    "task": number + 1,
                    "description": description,
                    "total": total,
                    "completed": 0.0,
                    "started": time.monotonic(),
                    "finished": False,
                }
            )
        self._write(force=True)
        return _Task(self, number, self._inner.task(description, total))

    def note(self, message: str) -> None:
        self._inner.note(message)

    def advanced(self, number: int, amount: float) -> None:
        with self._lock:
            self._tasks[number]["completed"] += amount
        self._write(force=False)

    def finished(self, number: int) -> None:
        with self._lock:
            task = self._tasks[number]
            if task["total"] is not None:
                task["completed"] = task["total"]
            task["finished"] = True
            task["elapsed_s"] = round(time.monotonic() - task["started"], 2)
        self._write(force=True)

    def snapshot(self) -> dict[str, Any]:
        """``{"tasks": [...]}``: each task's description, total, completed, elapsed_s, eta_s."""
        now = time.monotonic()
        with self._lock:
            tasks = []
            for t in self._tasks:
                elapsed = t.get("elapsed_s", round(now - t["started"], 2))
                eta = None if t["finished"] else eta_s(t["completed"], t["total"], elapsed)
                tasks.append(
                    {
                        "task": t["task"],
                        "description": t["description"],
                        "total": t["total"],
                        "completed": t["completed"],
                        "elapsed_s": elapsed,
                        "eta_s": None if eta is None else round(eta, 1),
                        "finished": t["finished"],
                    }
                )
        return {"tasks": tasks}

    def flush(self) -> None:
        self._write(force=True)

    def _write(self, *, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._written < settings.PROGRESS_WRITE_S:
            return
        self._written = now
        try:
            self._store.set_progress(self._job_id, self.snapshot())
        except Exception:  # progress is for watching: a store hiccup must not fail the job
            log.debug("progress of job %s not written", self._job_id, exc_info=True)
