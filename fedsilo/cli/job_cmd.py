"""`fedsilo job check JOB.toml`: the coordinator's whole pre-flight check, alone.

The same checks ``fedsilo run`` makes before contacting any silo (:func:`check_job`): the file's
shape, every step against its kind's schema (keys, types, bounds, with a did-you-mean for a
misspelt key) and what each driver refuses from the spec alone (roles, earlier steps). No silo is
contacted, so a silo's own policy (key sizes, columns) is checked only when the job runs, at
OpenJob, before anything else.
"""

from __future__ import annotations

import argparse

from fedsilo.coordinator.config import load_job_spec
from fedsilo.coordinator.drivers import check_job
from fedsilo.errors import FedsiloError

__all__ = ["check"]


def check(args: argparse.Namespace) -> int:
    """Exit 0 with one line when the job is valid; else the error's one line and exit code."""
    spec = load_job_spec(args.job)
    try:
        check_job(spec)
    except FedsiloError as err:
        raise type(err)(f"{args.job.name}: {err}") from None
    kinds = ", ".join(str(s["kind"]) for s in spec.steps)
    print(f"{args.job.name}: OK (job '{spec.name}', {len(spec.steps)} step(s): {kinds})")
    return 0
