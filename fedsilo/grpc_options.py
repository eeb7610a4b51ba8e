"""The gRPC channel and server options of every fedsilo process, in one place.

Both sides must agree: the coordinator pings a silo while a long call computes, and the silo's
server must allow those pings. Keeping the two lists side by side (and out of ``silo_node`` and
``coordinator``) lets each side import them without importing the other. The numbers themselves
live in :mod:`fedsilo.settings`.
"""

from __future__ import annotations

from typing import Any

from fedsilo import settings

__all__ = ["channel_options", "server_options"]


def _message_limits() -> list[tuple[str, Any]]:
    """Message size limits set on purpose (see settings), the same on both ends."""
    return [
        ("grpc.max_receive_message_length", settings.GRPC_MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", settings.GRPC_MAX_MESSAGE_BYTES),
    ]


def channel_options() -> list[tuple[str, Any]]:
    """Size limits, keepalive pings that find a hung silo long before a call's deadline, and
    a short reconnect backoff so a restarted silo is reachable again soon.

    A call may run for minutes with no data on the wire (the silo computes), so the pings must
    not stop after gRPC's default two pings without data (``max_pings_without_data`` 0: no limit);
    the server allows them (:func:`server_options`).
    """
    keepalive_ms = int(settings.GRPC_KEEPALIVE_TIME_S * 1000)
    timeout_ms = int(settings.GRPC_KEEPALIVE_TIMEOUT_S * 1000)
    return _message_limits() + [
        ("grpc.keepalive_time_ms", keepalive_ms),
        ("grpc.keepalive_timeout_ms", timeout_ms),
        # recent gRPC cores time a ping out by this (default 60 s), not only the keepalive one
        ("grpc.http2.ping_timeout_ms", timeout_ms),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.max_reconnect_backoff_ms", int(settings.GRPC_MAX_RECONNECT_BACKOFF_S * 1000)),
    ]


def server_options() -> list[tuple[str, Any]]:
    """Size limits and a ping policy for every fedsilo server (silo and coordinator).

    Keepalive: the coordinator pings every ``GRPC_KEEPALIVE_TIME_S`` while a call runs, even
    when no data flows for minutes; gRPC's default policy (one ping per 5 minutes without data,
    two strikes) would answer with GOAWAY "too_many_pings" and kill a healthy long call.
    """
    return _message_limits() + [
        (
            "grpc.http2.min_ping_interval_without_data_ms",
            int(settings.GRPC_KEEPALIVE_TIME_S * 1000 / 2),
        ),
        ("grpc.http2.max_ping_strikes", 0),
    ]
