"""Registry of coordinator-side drivers, one per job step kind.

A driver is ``(run: JobRun, step: dict) -> dict``: it sequences silo steps through ``run.call`` /
``run.call_many`` and returns what the job records for the step (counts, model ids, released
metrics). Modules in this package register on import; :func:`load_drivers` imports them all.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fedsilo.errors import ConfigError

if TYPE_CHECKING:
    from fedsilo.coordinator.jobrun import JobRun

__all__ = ["Driver", "driver", "driver_kinds", "get_driver", "load_drivers"]

Driver = Callable[["JobRun", dict[str, Any]], dict[str, Any]]
_DRIVERS: dict[str, Driver] = {}


def driver(kind: str) -> Callable[[Driver], Driver]:
    def register(fn: Driver) -> Driver:
        _DRIVERS[kind] = fn
        return fn

    return register


def load_drivers() -> None:
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


def get_driver(kind: str) -> Driver:
    load_drivers()
    try:
        return _DRIVERS[kind]
    except KeyError:
        known = ", ".join(sorted(_DRIVERS))
        raise ConfigError(f"unknown step kind '{kind}' (known: {known})") from None


def driver_kinds() -> list[str]:
    load_drivers()
    return sorted(_DRIVERS)
