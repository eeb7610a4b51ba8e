"""A rich progress display for long steps (the CLI's implementation of fedsilo.progress).

Bars with the count, elapsed time and the estimated time left, on stderr. The display starts
with the first task, so a job that fails before any leaves only its one-line error. ``show``
mirrors a progress snapshot recorded by another process (``fedsilo run --coordinator``,
``fedsilo jobs logs --follow``).
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from fedsilo.progress import ProgressTask

__all__ = ["RichProgress"]


class _Task:
    def __init__(self, progress: Progress, task_id: TaskID) -> None:
        self._progress = progress
        self._id = task_id

    def advance(self, amount: float = 1) -> None:
        self._progress.advance(self._id, amount)

    def finish(self) -> None:
        task = self._progress.tasks[self._id]
        if task.total is not None:
            self._progress.update(self._id, completed=task.total)
        self._progress.stop_task(self._id)


class RichProgress:
    """Bars on stderr; a context manager so the display is torn down on errors too."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._started = False
        self._mirrored: dict[int, TaskID] = {}

    def __enter__(self) -> RichProgress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._started:
            self._progress.stop()

    def _start(self) -> None:
        if not self._started:
            self._progress.start()
            self._started = True

    def task(self, description: str, total: float | None = None) -> ProgressTask:
        self._start()
        return _Task(self._progress, self._progress.add_task(description, total=total))

    def note(self, message: str) -> None:
        self._progress.console.print(f"[dim]{escape(message)}[/dim]", highlight=False)

    def show(self, snapshot: dict[str, Any]) -> None:
        """Bring the bars in line with a recorded snapshot (``{"tasks": [...]}``)."""
        for task in snapshot.get("tasks", []):
            number = int(task.get("task", 0))
            if number not in self._mirrored:
                self._start()
                total = task.get("total")
                self._mirrored[number] = self._progress.add_task(
                    str(task.get("description", "")), total=total
                )
            task_id = self._mirrored[number]
            self._progress.update(task_id, completed=float(task.get("completed") or 0))
            if task.get("finished"):
                self._progress.stop_task(task_id)
