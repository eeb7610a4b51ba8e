"""The registry of protocols: one record per job step kind, from which every list is derived.

A *protocol* here is what a job's ``[[steps]] kind`` names. Each lives in its own package,
``fedsilo.protocols.<kind>``: its parties' algorithms and messages, its step schema
(``schema.py``), its silo steps (``silo.py``) and its coordinator driver (``driver.py``). Each has
exactly one :class:`Protocol` record below, and the records say which packages exist: the job
schema, the silo's step registry and the coordinator's driver registry import
``fedsilo.protocols.<kind>.<part>`` for every record (:func:`modules`). The
silo's policy vocabulary (``KNOWN_PROTOCOLS``), the model registry's kinds (``MODEL_KINDS``),
the kinds whose every member holds the whole model (``WHOLE_KINDS``) and the job-level kinds no
policy switch governs (``JOB_STEPS``) are computed from these records, never kept by hand.
Adding a protocol is its folder, one record here and its rows in ``docs/leakage.md``.

This module imports nothing but the standard library: the silo, the coordinator and the
algorithms all read it. Each protocol package's ``__init__.py`` holds a docstring only, so that
importing one part (the schema) never loads another (the algorithms, the silo side).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

__all__ = [
    "JOB_STEPS",
    "KNOWN_PROTOCOLS",
    "MODEL_KINDS",
    "PROTOCOLS",
    "ROLES",
    "STEP_KINDS",
    "TRAINING_KINDS",
    "WHOLE_KINDS",
    "Protocol",
    "modules",
    "protocol",
]

#: roles a silo may take in a job: label holder, feature holder, horizontal member.
ROLES = frozenset({"active", "passive", "member"})


@dataclass(frozen=True)
class Protocol:
    """What the rest of fedsilo needs to know about one step kind."""

    #: the ``kind`` of a job step
    kind: str
    #: the human name (``fedsilo models``, reports, docs)
    title: str
    #: the roles a silo may take in it
    roles: frozenset[str]
    #: a silo's ``[policy] protocols`` must list it (deny by default); False for the job-level
    #: steps that only serve the protocols around them (noop, split, evaluate)
    policy: bool
    #: it trains a model of this kind for the registry (None: it trains none)
    model: str | None = None
    #: every member holds the whole model, which scores at one member alone
    whole_model: bool = False


_VERTICAL = frozenset({"active", "passive"})
_ANY = ROLES

PROTOCOLS: tuple[Protocol, ...] = (
    Protocol("noop", "connectivity check", _ANY, policy=False),
    Protocol("psi", "private set intersection", _VERTICAL, policy=True),
    Protocol("split", "train / validation / test split", _VERTICAL, policy=False),
    Protocol(
        "secureboost", "vertical SecureBoost (XGBoost)", _VERTICAL, policy=True, model="secureboost"
    ),
    Protocol("lr", "vertical logistic regression", _VERTICAL, policy=True, model="lr"),
    Protocol(
        "hlr",
        "horizontal logistic regression",
        frozenset({"member"}),
        policy=True,
        model="hlr",
        whole_model=True,
    ),
    Protocol(
        "hxgb",
        "horizontal XGBoost",
        frozenset({"member"}),
        policy=True,
        model="hxgb",
        whole_model=True,
    ),
    Protocol("evaluate", "evaluation", _ANY, policy=False),
    Protocol("score", "batch scoring", _ANY, policy=True),
    Protocol("count", "intersection count", _VERTICAL, policy=True),
    Protocol("stats", "column statistics and cross-silo correlation", _ANY, policy=True),
    Protocol("stability", "population stability index", _ANY, policy=True),
    Protocol("fairness", "fairness audit", _VERTICAL, policy=True),
    Protocol("woe", "WOE / IV binning", _VERTICAL, policy=True),
    Protocol("select", "feature selection", _VERTICAL, policy=True),
    Protocol("serve", "online scoring (preparation)", _VERTICAL, policy=True),
)

_BY_KIND = {p.kind: p for p in PROTOCOLS}
#: every step kind a job may name
STEP_KINDS: frozenset[str] = frozenset(_BY_KIND)
#: the kinds a silo's policy may allow (the ``[policy] protocols`` vocabulary)
KNOWN_PROTOCOLS: frozenset[str] = frozenset(p.kind for p in PROTOCOLS if p.policy)
#: job-level kinds that are part of every protocol, not protocols a policy opts into
JOB_STEPS: frozenset[str] = frozenset(p.kind for p in PROTOCOLS if not p.policy)
#: model kinds and their human names
MODEL_KINDS: dict[str, str] = {p.model: p.title for p in PROTOCOLS if p.model}
#: step kinds that train a model (each silo saves its part under ``jobspec.part_id``)
TRAINING_KINDS: tuple[str, ...] = tuple(p.kind for p in PROTOCOLS if p.model)
#: model kinds whose every member holds the whole model: they score alone
WHOLE_KINDS: frozenset[str] = frozenset(p.model for p in PROTOCOLS if p.whole_model and p.model)


def protocol(kind: str) -> Protocol | None:
    """The record of step kind ``kind``, or None for a kind fedsilo does not know."""
    return _BY_KIND.get(kind)


def modules(part: str) -> dict[str, ModuleType]:
    """``fedsilo.protocols.<kind>.<part>`` imported for every record, by kind, in record order.

    ``part`` is ``"schema"`` (the job schema), ``"silo"`` (the silo's steps) or ``"driver"`` (the
    coordinator's drivers). Importing a ``silo`` or ``driver`` module registers what it defines.
    """
    return {p.kind: importlib.import_module(f"{__name__}.{p.kind}.{part}") for p in PROTOCOLS}
