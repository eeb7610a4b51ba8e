"""The one place where domain errors become gRPC statuses (servers) and back (clients)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from fedsilo.errors import FedsiloError, JobError, SiloUnavailable, error_from_status, grpc_status_for

__all__ = ["abort_on_error", "raise_from_rpc"]

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
