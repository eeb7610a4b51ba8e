"""The ``noop`` step's keys (none): see :mod:`fedsilo.jobschema`."""

from __future__ import annotations

from fedsilo.jobschema import StepSchema

__all__ = ["SCHEMA"]

SCHEMA = StepSchema("noop", "every silo answers with its role and dataset size", ())
