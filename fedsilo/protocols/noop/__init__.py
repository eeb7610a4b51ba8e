"""The no-op job: every silo answers with its role and dataset size (a consortium check).

The parts of this package are listed in ``fedsilo/protocols/__init__.py`` and
``docs/internals.md``; this file stays empty so that importing one part loads no other.
"""
