"""Population stability index between a training population and a scoring batch
(``kind = "stability"``; not to be confused with PSI, private set intersection).

The parts of this package are listed in ``fedsilo/protocols/__init__.py`` and
``docs/internals.md``; this file stays empty so that importing one part loads no other.
"""
