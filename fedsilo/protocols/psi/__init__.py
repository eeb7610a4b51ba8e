"""Private set intersection as a job step; the PSI math over bytes is :mod:`fedsilo.psi`.

The parts of this package are listed in ``fedsilo/protocols/__init__.py`` and
``docs/internals.md``; this file stays empty so that importing one part loads no other.
"""
