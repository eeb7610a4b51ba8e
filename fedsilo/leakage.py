"""What each message kind reveals to its recipient: the registry behind the leakage table.

Every message a silo sends to another silo (through the coordinator, sealed) has a kind, registered
here once with a sentence saying what its recipient learns from it. The audit ledger copies that
sentence into every entry, and ``docs/leakage.md`` is checked against this registry by a test, so
the documentation cannot drift from what the code sends.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedsilo.errors import ProtocolError

__all__ = ["COORDINATOR", "KindInfo", "describe", "kinds", "register_kind"]

#: the pseudo-recipient used in ledger entries for what a silo releases to the coordinator
COORDINATOR = "coordinator"


@dataclass(frozen=True)
class KindInfo:
    kind: str
    protocol: str
    reveals: str


_KINDS: dict[str, KindInfo] = {}


def register_kind(kind: str, *, reveals: str) -> str:
    """Declare a message kind (``protocol.name``) and what it reveals; returns the kind."""
    protocol = kind.split(".", 1)[0]
    info = KindInfo(kind=kind, protocol=protocol, reveals=reveals)
    existing = _KINDS.get(kind)
    if existing is not None and existing != info:
        raise ValueError(f"message kind {kind!r} registered twice with different texts")
    _KINDS[kind] = info
    return kind


def describe(kind: str) -> str:
    """What ``kind`` reveals; an unregistered kind may not be sent at all."""
    try:
        return _KINDS[kind].reveals
    except KeyError:
        raise ProtocolError(f"message kind '{kind}' is not registered in fedsilo.leakage") from None


def kinds() -> list[KindInfo]:
    return sorted(_KINDS.values(), key=lambda k: k.kind)


register_kind(
    "job.released",
    reveals="what the silo releases to the coordinator in a step's reply meta (counts, progress, "
    "metrics its policy allows); never ids, features, labels or gradients",
)
