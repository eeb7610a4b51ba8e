"""The ``count`` step: each silo releases the size of a stored alignment (the intersection size)
to the coordinator, under its own minimum-count rule.

The parts of this package are listed in ``fedsilo/protocols/__init__.py`` and
``docs/internals.md``; this file stays empty so that importing one part loads no other.
"""
