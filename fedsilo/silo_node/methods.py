"""Registry of the silo-side methods of every protocol (what the coordinator calls in a job).

A *method* is a plain function ``(ctx, session, request) -> reply`` registered under a name
such as ``psi.start`` with :func:`method`, together with the job step kinds it belongs to
(``psi.start`` runs only inside a ``psi`` step of the accepted job, ``predict.part`` inside an
``evaluate`` or ``score`` step). "Step" means a job step only: the ``[[steps]]`` of a job spec.
A method sees unsealed :class:`~fedsilo.message.Message` values only, and the entry of the job
spec the silo accepted at OpenJob for the step it runs in (``request.spec_step``): parameters come
from there, never from the coordinator's meta. Authorisation, sealing, the audit ledger and gRPC
are the dispatcher's business (``fedsilo.silo_node.dispatch``; on the wire every call travels in
the ``Step`` RPC of the versioned proto). The methods live with their protocol, in
``fedsilo.protocols.<kind>.silo``; the dispatcher imports that module for every record of the
protocol registry (:func:`fedsilo.silo_node.dispatch.load_method_modules`).
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
    "RegisteredMethod",
    "MethodFn",
    "CallReply",
    "CallRequest",
    "get_method",
    "method",
    "method_names",
]


@dataclass
class CallRequest:
    meta: dict[str, Any] = field(default_factory=dict)
    inbox: dict[str, Message] = field(default_factory=dict)
    #: an unsealed message from the coordinator (e.g. a sum of ciphertexts it computed)
    plain: Message | None = None
    #: the accepted job spec's entry for the step this method runs in, and its index
    spec_step: Mapping[str, Any] = field(default_factory=dict)
    step_index: int = 0

    def message_from(self, sender: str, kind: str) -> Message:
        """The message ``sender`` sent for this call; refuses a missing or wrong-kind one."""
        try:
            return self.inbox[sender].expect(kind)
        except KeyError:
            raise ProtocolError(f"call expected a '{kind}' message from '{sender}'") from None

    def only_message(self, kind: str) -> tuple[str, Message]:
        if len(self.inbox) != 1:
            raise ProtocolError(f"call expected exactly one '{kind}' message")
        sender, msg = next(iter(self.inbox.items()))
        return sender, msg.expect(kind)


@dataclass
class CallReply:
    meta: dict[str, Any] = field(default_factory=dict)
    outbox: dict[str, Message] = field(default_factory=dict)
    #: an unsealed message released to the coordinator (its kind must say what it reveals)
    release: Message | None = None


MethodFn = Callable[["SiloContext", "JobSession", CallRequest], CallReply]


@dataclass(frozen=True)
class RegisteredMethod:
    """A method and the job step kinds (``[[steps]] kind``) it may run inside."""

    fn: MethodFn
    kinds: frozenset[str]


_METHODS: dict[str, RegisteredMethod] = {}


def method(name: str, *, kinds: tuple[str, ...]) -> Callable[[MethodFn], MethodFn]:
    """Register a method under ``protocol.name``, runnable only inside a job step of ``kinds``."""
    if not kinds:
        raise ValueError(f"method {name!r} must name the job step kinds it belongs to")

    def register(fn: MethodFn) -> MethodFn:
        known = _METHODS.get(name)
        if known is not None and known.fn is not fn:
            raise ValueError(f"method {name!r} registered twice")
        _METHODS[name] = RegisteredMethod(fn, frozenset(kinds))
        return fn

    return register


def get_method(name: str) -> RegisteredMethod:
    try:
        return _METHODS[name]
    except KeyError:
        raise ProtocolError(f"unknown method '{name[:80]}'") from None


def method_names() -> list[str]:
    return sorted(_METHODS)
