"""The one place where domain errors become gRPC statuses (servers) and back (clients)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError

from fedsilo.errors import (
    FedsiloError,
    JobError,
    ProtocolError,
    SiloUnavailable,
    error_from_status,
    grpc_status_for,
)

__all__ = ["RequestDecodeGuard", "abort_on_error", "raise_from_rpc"]

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


def abort_on_error(fn: F) -> F:
    """Servicer decorator: a FedsiloError aborts with its status; anything else is INTERNAL.

    Unexpected exceptions are logged here with their traceback and answered with a generic
    message, so a hostile message never crashes the server nor leaks internals to the caller.
    """

    @functools.wraps(fn)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return fn(self, request, context)
        except FedsiloError as err:
            context.abort(grpc_status_for(err), str(err))
        except Exception:
            log.exception("internal error in %s", fn.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"internal error in {fn.__name__}")

    return wrapper  # type: ignore[return-value]


def raise_from_rpc(err: grpc.RpcError, party: str) -> FedsiloError:
    """The domain error for a failed call to ``party``, with the party named in the message."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = (err.details() if hasattr(err, "details") else None) or str(code)
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
    codec = {"request_deserializer": None, "response_serializer": handler.response_serializer}
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(_unary(handler.unary_unary, parse), **codec)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(_unary(handler.unary_stream, parse), **codec)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(_stream(handler.stream_unary, parse), **codec)
    assert handler.stream_stream is not None
    return grpc.stream_stream_rpc_method_handler(_stream(handler.stream_stream, parse), **codec)


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
