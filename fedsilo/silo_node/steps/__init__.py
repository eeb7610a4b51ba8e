"""Registry of silo-side protocol steps.

A step is a plain function ``(ctx, session, request) -> reply`` registered under a method name
with :func:`step`. It sees unsealed :class:`~fedsilo.message.Message` values only; sealing, the
audit ledger and gRPC are the dispatcher's business (``fedsilo.silo_node.dispatch``). Modules in
this package are imported by the dispatcher, so a new protocol is one new module here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fedsilo.errors import ProtocolError
from fedsilo.message import Message

if TYPE_CHECKING:
    from fedsilo.silo_node.context import SiloContext
    from fedsilo.silo_node.session import JobSession

__all__ = ["StepFn", "StepReply", "StepRequest", "get_step", "step", "step_names"]


@dataclass
class StepRequest:
    meta: dict[str, Any] = field(default_factory=dict)
    inbox: dict[str, Message] = field(default_factory=dict)
    #: an unsealed message from the coordinator (e.g. a sum of ciphertexts it computed)
    plain: Message | None = None

    def message_from(self, sender: str, kind: str) -> Message:
        """The message ``sender`` sent for this step; refuses a missing or wrong-kind one."""
        try:
            return self.inbox[sender].expect(kind)
        except KeyError:
            raise ProtocolError(f"step expected a '{kind}' message from '{sender}'") from None

    def only_message(self, kind: str) -> tuple[str, Message]:
        if len(self.inbox) != 1:
            raise ProtocolError(f"step expected exactly one '{kind}' message")
        sender, msg = next(iter(self.inbox.items()))
        return sender, msg.expect(kind)


@dataclass
class StepReply:
    meta: dict[str, Any] = field(default_factory=dict)
    outbox: dict[str, Message] = field(default_factory=dict)
    #: an unsealed message released to the coordinator (its kind must say what it reveals)
    release: Message | None = None


StepFn = Callable[["SiloContext", "JobSession", StepRequest], StepReply]
_STEPS: dict[str, StepFn] = {}


def step(name: str) -> Callable[[StepFn], StepFn]:
    """Register a step under ``protocol.method``."""

    def register(fn: StepFn) -> StepFn:
        if name in _STEPS and _STEPS[name] is not fn:
            raise ValueError(f"step {name!r} registered twice")
        _STEPS[name] = fn
        return fn

    return register


def get_step(name: str) -> StepFn:
    try:
        return _STEPS[name]
    except KeyError:
        raise ProtocolError(f"unknown step '{name[:80]}'") from None


def step_names() -> list[str]:
    return sorted(_STEPS)
