"""A rich progress display for long steps (the CLI's implementation of fedsilo.progress)."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from fedsilo.progress import ProgressTask

__all__ = ["RichProgress"]


class _Task:
    def __init__(self, progress: Progress, task_id: int) -> None:
        self._progress = progress
        self._id = task_id

    def advance(self, amount: float = 1) -> None:
        self._progress.advance(self._id, amount)  # type: ignore[arg-type]

    def finish(self) -> None:
        task = self._progress.tasks[self._id]
        if task.total is not None:
            self._progress.update(self._id, completed=task.total)  # type: ignore[arg-type]
        self._progress.stop_task(self._id)  # type: ignore[arg-type]


class RichProgress:
    """Bars on stderr; a context manager so the display is torn down on errors too."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def task(self, description: str, total: float | None = None) -> ProgressTask:
        return _Task(self._progress, self._progress.add_task(description, total=total))

    def note(self, message: str) -> None:
        self._progress.console.print(f"[dim]{message}[/dim]")
