"""The fairness audit: group metrics of a model's scores for protected attributes another silo
holds, computed under Paillier so that no party sees another's rows.

The parts of this package are listed in ``fedsilo/protocols/__init__.py`` and
``docs/internals.md``; this file stays empty so that importing one part loads no other.
"""
