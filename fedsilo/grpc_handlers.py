"""Rebuilding a gRPC method handler around a new behaviour: what every interceptor needs.

gRPC's ``RpcMethodHandler`` has four shapes (unary/stream request x unary/stream response), each
with its own factory. The identity check (:mod:`fedsilo.crypto.tls`), the silo's admission
control (:mod:`fedsilo.silo_node.limits`) and the request parser
(:mod:`fedsilo.grpc_errors`) all wrap a handler's behaviour and keep its shape; this module is the
one place that knows the four factories.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

__all__ = ["Behavior", "behavior_of", "rebuilt"]

#: a servicer method: ``(request or request iterator, context) -> reply or reply iterator``
Behavior = Callable[..., Any]

_FACTORIES: dict[tuple[bool, bool], Callable[..., grpc.RpcMethodHandler]] = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def behavior_of(handler: grpc.RpcMethodHandler) -> Behavior:
    """The one behaviour a handler carries, whatever its shape."""
    for behavior in (
        handler.unary_unary,
        handler.unary_stream,
        handler.stream_unary,
        handler.stream_stream,
    ):
        if behavior is not None:
            return behavior
    raise ValueError("a method handler with no behaviour")


def rebuilt(
    handler: grpc.RpcMethodHandler, behavior: Behavior, *, keep_deserializer: bool = True
) -> grpc.RpcMethodHandler:
    """A handler of ``handler``'s shape and serializers running ``behavior`` instead.

    ``keep_deserializer=False`` hands the raw request bytes to ``behavior``, which then parses
    them itself (so a parse failure can be answered as the caller's fault, not INTERNAL).
    """
    factory = _FACTORIES[(bool(handler.request_streaming), bool(handler.response_streaming))]
    return factory(
        behavior,
        request_deserializer=handler.request_deserializer if keep_deserializer else None,
        response_serializer=handler.response_serializer,
    )
