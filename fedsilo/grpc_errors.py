"""The one place where domain errors become gRPC statuses (servers) and back (clients)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError

from fedsilo.crypto.certs import IDENTITY_SUFFIX
from fedsilo.errors import (
    AuthError,
    ConfigError,
    CryptoError,
    DataError,
    FedsiloError,
    JobError,
    LimitExceeded,
    NotFound,
    PolicyError,
    ProtocolError,
    SiloUnavailable,
)
from fedsilo.grpc_handlers import behavior_of, rebuilt
from fedsilo.logs import where_raised

__all__ = [
    "FirstKept",
    "RequestDecodeGuard",
    "abort_on_error",
    "error_from_status",
    "grpc_status_for",
    "is_retryable",
    "raise_from_rpc",
]

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

#: the status each domain error travels as; most specific class first (SiloUnavailable before
#: JobError). Kept here, not in ``fedsilo.errors``, so the exception tree loads no grpc.
_GRPC_STATUS: tuple[tuple[type[FedsiloError], grpc.StatusCode], ...] = (
    (ConfigError, grpc.StatusCode.FAILED_PRECONDITION),
    (DataError, grpc.StatusCode.FAILED_PRECONDITION),
    (PolicyError, grpc.StatusCode.PERMISSION_DENIED),
    (ProtocolError, grpc.StatusCode.INVALID_ARGUMENT),
    (AuthError, grpc.StatusCode.UNAUTHENTICATED),
    (CryptoError, grpc.StatusCode.INVALID_ARGUMENT),
    (SiloUnavailable, grpc.StatusCode.UNAVAILABLE),
    (JobError, grpc.StatusCode.ABORTED),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (LimitExceeded, grpc.StatusCode.RESOURCE_EXHAUSTED),
)


def grpc_status_for(err: FedsiloError) -> grpc.StatusCode:
    """The status code a servicer aborts with for ``err`` (most specific class wins)."""
    for cls, code in _GRPC_STATUS:
        if isinstance(err, cls):
            return code
    return grpc.StatusCode.INTERNAL


def error_from_status(code: grpc.StatusCode, details: str) -> FedsiloError:
    """Rebuild the domain error a silo raised from the status it answered with."""
    for cls, status in _GRPC_STATUS:
        if status == code and cls is not SiloUnavailable:
            return cls(details)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return SiloUnavailable(details)
    return JobError(details)


def abort_on_error(fn: F) -> F:
    """Servicer decorator: a FedsiloError aborts with its status; anything else is INTERNAL.

    Unexpected exceptions are logged here with where they were raised (not their message, which
    may quote data) and answered with a generic message, so a hostile message never crashes the
    server nor leaks internals to the caller.
    """

    @functools.wraps(fn)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        if hasattr(self, "on_refused") and isinstance(request, Iterator):
            request = FirstKept(request)  # a refused stream is named by its first message
        try:
            return fn(self, request, context)
        except FedsiloError as err:
            _report_refusal(self, fn.__name__, request, context, err)
            context.abort(grpc_status_for(err), str(err))
        except Exception as exc:  # where, not what: its message may quote data
            log.error("internal error in %s\n%s", fn.__name__, where_raised(exc))
            context.abort(grpc.StatusCode.INTERNAL, f"internal error in {fn.__name__}")

    return wrapper  # type: ignore[return-value]


class FirstKept(Iterator[Any]):
    """A request stream that remembers its first message (the call's header), so the record of
    a refused stream can say which job and method it was."""

    def __init__(self, messages: Iterator[Any]) -> None:
        self._messages = messages
        self.first: Any = None

    def __next__(self) -> Any:
        item = next(self._messages)
        if self.first is None:
            self.first = item
        return item


def _report_refusal(
    servicer: Any, method: str, request: Any, context: grpc.ServicerContext, err: FedsiloError
) -> None:
    """Hand a refusal to the servicer's ``on_refused`` hook, if it has one (a silo records it in
    its ledger); a hook that fails is logged, and the refusal is answered all the same."""
    hook = getattr(servicer, "on_refused", None)
    if hook is None:
        return
    try:
        hook(method, request, context, err)
    except Exception:
        log.exception("could not record the refusal of %s", method)


#: what gRPC writes into an UNAVAILABLE status when *this side* refused the TLS handshake, and
#: what it means for an operator. A server refusing our certificate is not among them: the
#: client then sees only "Socket closed", like any dropped connection, and it stays retryable.
_TLS_FAILURES: tuple[tuple[str, str], ...] = (
    (
        "Hostname Verification Check failed",
        "its certificate does not name '{identity}' "
        "(wrong address, or a certificate issued to another party)",
    ),
    (
        "CERTIFICATE_VERIFY_FAILED",
        "its certificate was not issued by the consortium CA in our config",
    ),
    ("WRONG_VERSION_NUMBER", "it does not speak TLS (plaintext server?)"),
    ("Tls handshake failed", "the TLS handshake failed"),
    ("SSL_ERROR_SSL", "the TLS handshake failed"),
)


def _status(err: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = (err.details() if hasattr(err, "details") else None) or str(code)
    return code, details


def _tls_failure(code: grpc.StatusCode, details: str, party: str) -> str | None:
    """Why our side refused the peer's TLS identity, or None if this is not such a failure."""
    if code != grpc.StatusCode.UNAVAILABLE:
        return None
    for marker, why in _TLS_FAILURES:
        if marker in details:
            return why.format(identity=f"{party}{IDENTITY_SUFFIX}")
    return None


def is_retryable(err: grpc.RpcError, party: str) -> bool:
    """Whether retrying an idempotent call can help: UNAVAILABLE, but not a refused identity.

    A certificate that does not chain to our CA or names another party will not change between
    attempts; retrying only delays a message the operator needs to read.
    """
    code, details = _status(err)
    return code == grpc.StatusCode.UNAVAILABLE and _tls_failure(code, details, party) is None


def raise_from_rpc(err: grpc.RpcError, party: str) -> FedsiloError:
    """The domain error for a failed call to ``party``, with the party named in the message."""
    code, details = _status(err)
    tls_why = _tls_failure(code, details, party)
    if tls_why is not None:
        return AuthError(f"'{party}' did not prove its identity: {tls_why}")
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return SiloUnavailable(f"silo '{party}' unavailable ({code.name.lower()}): {details}")
    domain = error_from_status(code, details)
    if type(domain) is JobError and code == grpc.StatusCode.INTERNAL:
        return JobError(f"silo '{party}' failed: {details}")
    return type(domain)(f"silo '{party}': {details}")


class RequestDecodeGuard(grpc.ServerInterceptor):
    """Parse request protobufs inside the handler, so undecodable bytes are INVALID_ARGUMENT.

    gRPC runs a handler's ``request_deserializer`` itself and answers a failure with INTERNAL
    ("Exception deserializing request!"): a hostile or corrupt request would look like a server
    bug. This interceptor hands the raw bytes through and parses them in the handler: a unary
    request that does not parse is aborted with INVALID_ARGUMENT; a streamed frame that does not
    parse raises ProtocolError from the request iterator, which ``abort_on_error`` maps.
    Put it after any authentication interceptor, so strangers are refused before parsing.
    """

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        return _parse_in_handler(handler)


def _parse_in_handler(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    parse = handler.request_deserializer
    wrap = _stream if handler.request_streaming else _unary
    return rebuilt(handler, wrap(behavior_of(handler), parse), keep_deserializer=False)


def _unary(behavior: Callable[..., Any], parse: Callable[[bytes], Any]) -> Callable[..., Any]:
    def run(raw: bytes, context: grpc.ServicerContext) -> Any:
        try:
            request = parse(raw)
        except DecodeError:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "request is not a valid message")
        return behavior(request, context)

    return run


def _stream(behavior: Callable[..., Any], parse: Callable[[bytes], Any]) -> Callable[..., Any]:
    def run(raw_frames: Iterator[bytes], context: grpc.ServicerContext) -> Any:
        return behavior(_parsed(raw_frames, parse), context)

    return run


def _parsed(raw_frames: Iterator[bytes], parse: Callable[[bytes], Any]) -> Iterator[Any]:
    for raw in raw_frames:
        try:
            yield parse(raw)
        except DecodeError:
            raise ProtocolError("a streamed frame is not a valid message") from None
