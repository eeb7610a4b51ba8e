"""Registry of coordinator-side drivers, one per job step kind.

A driver is ``(run: JobRun, step: dict) -> dict``: it sequences silo steps through ``run.call`` /
``run.call_many`` and returns what the job records for the step (counts, model ids, released
metrics). Drivers live with their protocol, in ``fedsilo.protocols.<kind>.driver``, and register
on import; :func:`load_drivers` imports that module for every record of the protocol registry.

A driver may also register a ``check`` ``(spec, step) -> None``: refusals that follow from the job
spec alone (a bad parameter, too few parties). The orchestrator runs every step's check before it
opens any session, so such a job fails with its reason without a silo being contacted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fedsilo.errors import ConfigError
from fedsilo.jobschema import check_steps
from fedsilo.protocols import modules

if TYPE_CHECKING:
    from fedsilo.coordinator.config import JobSpec
    from fedsilo.coordinator.jobrun import JobRun

__all__ = [
    "Check",
    "Driver",
    "check_job",
    "check_step",
    "driver",
    "driver_kinds",
    "get_driver",
    "index_of",
    "load_drivers",
]

Driver = Callable[["JobRun", dict[str, Any]], dict[str, Any]]
Check = Callable[["JobSpec", dict[str, Any]], None]
_DRIVERS: dict[str, Driver] = {}
_CHECKS: dict[str, Check] = {}


def driver(kind: str, *, check: Check | None = None) -> Callable[[Driver], Driver]:
    def register(fn: Driver) -> Driver:
        _DRIVERS[kind] = fn
        if check is not None:
            _CHECKS[kind] = check
        return fn

    return register


def check_step(spec: JobSpec, step: dict[str, Any]) -> None:
    """Run the pre-flight check of ``step``'s kind, if its driver registered one."""
    kind = str(step["kind"])
    get_driver(kind)
    check = _CHECKS.get(kind)
    if check is not None:
        check(spec, step)


def check_job(spec: JobSpec) -> None:
    """The whole job, before any silo is contacted: every step against its kind's schema
    (:func:`fedsilo.jobschema.check_steps`: keys, types, bounds), then each driver's own check
    (roles, what earlier steps must provide)."""
    check_steps(spec.steps)
    for step in spec.steps:
        check_step(spec, step)


def index_of(spec: JobSpec, step: dict[str, Any]) -> int:
    """The position of ``step`` (this very table) in the job's step list."""
    return next(i for i, entry in enumerate(spec.steps) if entry is step)


def load_drivers() -> None:
    """Import ``fedsilo.protocols.<kind>.driver`` for every registered protocol."""
    modules("driver")


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
