"""The ``woe`` step: weight of evidence and information value of every silo's characteristics,
the passive silos' counted over the label holder's encrypted labels.

The parts of this package are listed in ``fedsilo/protocols/__init__.py`` and
``docs/internals.md``; this file stays empty so that importing one part loads no other.
"""
