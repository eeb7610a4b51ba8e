"""The ``select`` step: each silo keeps those of its own columns that pass the step's criteria
(IV from a woe step, importance from a model of the job, VIF / correlation from a stats
step's matrix, decided by the coordinator); later training steps read only them.

The parts of this package are listed in ``fedsilo/protocols/__init__.py`` and
``docs/internals.md``; this file stays empty so that importing one part loads no other.
"""
