"""Progress reporting for long steps, decoupled from how it is shown.

Drivers report through :class:`Progress`; the CLI passes a rich progress bar, notebooks and tests
the silent default.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["NullProgress", "Progress", "ProgressTask"]


class ProgressTask(Protocol):
    def advance(self, amount: float = 1) -> None: ...

    def finish(self) -> None: ...


class Progress(Protocol):
    def task(self, description: str, total: float | None = None) -> ProgressTask: ...

    def note(self, message: str) -> None: ...


class _NullTask:
    def advance(self, amount: float = 1) -> None:
        return None

    def finish(self) -> None:
        return None


class NullProgress:
    """Shows nothing."""

    def task(self, description: str, total: float | None = None) -> ProgressTask:
        return _NullTask()

    def note(self, message: str) -> None:
        return None
