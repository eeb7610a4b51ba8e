"""The message order of a fairness audit, written once (:mod:`fedsilo.protocols.conversation`).

Four calls: the attribute holder encrypts its groups, the label holder masks its sums, the
attribute holder opens them, the label holder unmasks and computes the metrics. The driver runs it
over a job (``driver.py``), :func:`fedsilo.protocols.fairness.local.run_audit` in one process.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fedsilo.protocols.conversation import Parties, Reply

__all__ = ["METHODS", "run"]

#: silo method names, in call order
METHODS = ("fairness.groups", "fairness.mask", "fairness.open", "fairness.finish")


def run(
    parties: Parties,
    *,
    label_holder: str,
    attribute_holder: str,
    meta: Mapping[str, Any] | None = None,
) -> tuple[Reply, Reply]:
    """(the attribute holder's first reply, the label holder's last): what each released."""
    meta = dict(meta or {})
    groups = parties.call(attribute_holder, METHODS[0], meta)
    masked = parties.call(label_holder, METHODS[1], meta, [groups])
    shares = parties.call(attribute_holder, METHODS[2], meta, [masked])
    return groups, parties.call(label_holder, METHODS[3], meta, [shares])
