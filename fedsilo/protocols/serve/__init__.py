"""Online scoring of a vertical model: the ``serve`` step prepares it, the silos serve it.

The parts of this package are listed in ``fedsilo/protocols/__init__.py`` and
``docs/internals.md``; this file stays empty so that importing one part loads no other.
"""
