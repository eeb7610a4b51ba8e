"""Registry of silo-side protocol steps.

A step is a plain function ``(ctx, session, request) -> reply`` registered under a method name
with :func:`step`, together with the job step kinds it belongs to (``psi.start`` runs only inside
a ``psi`` step of the accepted job, ``predict.part`` inside an ``evaluate`` or ``score`` step). It
sees unsealed :class:`~fedsilo.message.Message` values only, and the entry of the job spec the
silo accepted at OpenJob for the step it runs in (``request.spec_step``): parameters come from
there, never from the coordinator's meta. Authorisation, sealing, the audit ledger and gRPC are
the dispatcher's business (``fedsilo.silo_node.dispatch``). The steps themselves live with their
protocol, in ``fedsilo.protocols.<kind>.silo``; the dispatcher imports that module for every
record of the protocol registry (:func:`fedsilo.silo_node.dispatch.load_step_modules`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fedsilo.errors import ProtocolError
from fedsilo.message import Message

if TYPE_CHECKING:
    from fedsilo.silo_node.context import SiloContext
    from fedsilo.silo_node.session import JobSession

__all__ = [
    "RegisteredStep",
    "StepFn",
    "StepReply",
    "StepRequest",
    "get_step",
    "step",
    "step_names",
]


@dataclass
class StepRequest:
    meta: dict[str, Any] = field(default_factory=dict)
    inbox: dict[str, Message] = field(default_factory=dict)
    #: an unsealed message from the coordinator (e.g. a sum of ciphertexts it computed)
    plain: Message | None = None
    #: the accepted job spec's entry for the step this method runs in, and its index
    spec_step: Mapping[str, Any] = field(default_factory=dict)
    step_index: int = 0

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


@dataclass(frozen=True)
class RegisteredStep:
    """A step method and the job step kinds (``[[steps]] kind``) it may run inside."""

    fn: StepFn
    kinds: frozenset[str]


_STEPS: dict[str, RegisteredStep] = {}


def step(name: str, *, kinds: tuple[str, ...]) -> Callable[[StepFn], StepFn]:
    """Register a step under ``protocol.method``, runnable only inside a job step of ``kinds``."""
    if not kinds:
        raise ValueError(f"step {name!r} must name the job step kinds it belongs to")

    def register(fn: StepFn) -> StepFn:
        known = _STEPS.get(name)
        if known is not None and known.fn is not fn:
            raise ValueError(f"step {name!r} registered twice")
        _STEPS[name] = RegisteredStep(fn, frozenset(kinds))
        return fn

    return register


def get_step(name: str) -> RegisteredStep:
    try:
        return _STEPS[name]
    except KeyError:
        raise ProtocolError(f"unknown step '{name[:80]}'") from None


def step_names() -> list[str]:
    return sorted(_STEPS)
