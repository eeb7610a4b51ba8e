"""What a silo bounds per caller so that a few calls cannot starve the rest: concurrent job calls
and the time a step stream may stall.

gRPC's sync server runs every call, health checks included, on one thread pool and holds a
thread for a stream's whole life; it has no server-side timeout. So a caller that opens streams
and stops sending would take every thread. Three bounds keep threads free (``docs/internals.md``,
"Availability"):

- :class:`AdmissionInterceptor` admits every call but the health check and Describe through a
  :class:`CallLimiter`, per caller identity and in total; the total stays below the pool size, so
  threads always remain for health and Describe. A call beyond a cap is refused at once.
- :func:`timed_frames` reads a step request with an idle timeout and a total time cap, answering
  the caller ``RESOURCE_EXHAUSTED`` with a one-line reason instead of waiting forever.
- :func:`paced_replies` cancels a call whose caller stopped taking reply frames.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any, TypeVar

import grpc

from fedsilo.crypto.tls import peer_identity
from fedsilo.errors import ConfigError, LimitExceeded
from fedsilo.grpc_errors import grpc_status_for
from fedsilo.grpc_handlers import Behavior, behavior_of, rebuilt
from fedsilo.logs import clean, event
from fedsilo.silo_node.session import current_caller

__all__ = [
    "AdmissionInterceptor",
    "CallLimiter",
    "caller_of",
    "paced_replies",
    "timed_frames",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: the gRPC health check's method path
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
#: calls that never wait behind job calls (nor count against their caps): the liveness probe and
#: the cheap read-only description.
UNLIMITED_METHODS = frozenset({HEALTH_CHECK, "/fedsilo.v1.SiloService/Describe"})


def caller_of(context: grpc.ServicerContext) -> str:
    """Who a call counts against: the verified certificate's name under mTLS, else the peer's
    host (not its port: one host opening many connections is still one caller)."""
    identity = peer_identity(context)
    if identity is not None:
        return identity
    return context.peer().rsplit(":", 1)[0]


class CallLimiter:
    """Counts calls in progress per caller and in total; refuses one beyond either cap."""

    def __init__(self, *, total: int, per_caller: int) -> None:
        if total < 1 or per_caller < 1:
            raise ConfigError("call limits must be at least 1")
        self._total, self._per_caller = total, per_caller
        self._lock = threading.Lock()
        self._active: dict[str, int] = {}

    def admit(self, caller: str) -> Callable[[], None]:
        """Count one call of ``caller`` in; returns its release (safe to call more than once)."""
        with self._lock:
            mine, everyone = self._active.get(caller, 0), sum(self._active.values())
            if mine >= self._per_caller:
                raise LimitExceeded(
                    f"{mine} calls from '{caller}' already in progress, the most this silo serves "
                    "at once per caller (MAX_JOB_CALLS_PER_CALLER); retry when one ends"
                )
            if everyone >= self._total:
                raise LimitExceeded(
                    f"{everyone} calls already in progress, the most this silo serves at once "
                    "(MAX_JOB_CALLS); retry when one ends"
                )
            self._active[caller] = mine + 1
        return _once(lambda: self._release(caller))

    def in_progress(self, caller: str | None = None) -> int:
        """Calls now admitted, of ``caller`` or of everyone."""
        with self._lock:
            if caller is not None:
                return self._active.get(caller, 0)
            return sum(self._active.values())

    def _release(self, caller: str) -> None:
        with self._lock:
            left = self._active[caller] - 1
            if left:
                self._active[caller] = left
            else:
                del self._active[caller]


def _once(fn: Callable[[], None]) -> Callable[[], None]:
    lock, done = threading.Lock(), [False]

    def run() -> None:
        with lock:
            if done[0]:
                return
            done[0] = True
        fn()

    return run


class AdmissionInterceptor(grpc.ServerInterceptor):
    """Admits each call (but :data:`UNLIMITED_METHODS`) through ``limiter``, for its whole life.

    The slot is released when the handler returns or, for streamed replies, when the reply ends
    or the call terminates (cancelled, deadline), whichever comes first. The caller's identity
    is published in :data:`~fedsilo.silo_node.session.current_caller` while the handler runs, so
    sessions are counted against it. Put it after the identity check: strangers are refused
    before they count.
    """

    def __init__(self, limiter: CallLimiter, *, unlimited: Iterable[str] = UNLIMITED_METHODS):
        self._limiter = limiter
        self._unlimited = frozenset(unlimited)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        method = handler_call_details.method  # type: ignore[attr-defined]
        if handler is None or method in self._unlimited:
            return handler
        return rebuilt(handler, self._admitted(behavior_of(handler), method))

    def _admitted(self, behavior: Behavior, method: str) -> Behavior:
        def run(request: Any, context: grpc.ServicerContext) -> Any:
            caller = caller_of(context)
            try:
                release = self._limiter.admit(caller)
            except LimitExceeded as err:
                event(
                    log,
                    "request refused",
                    logging.WARNING,
                    method=clean(method, 80),
                    caller=clean(caller),
                    reason=clean(err),
                )
                context.abort(grpc_status_for(err), str(err))
            if not context.add_callback(release):
                release()  # the call already ended
            token = current_caller.set(caller)
            try:
                result = behavior(request, context)
            except BaseException:
                release()
                raise
            finally:
                current_caller.reset(token)
            if isinstance(result, Iterator):
                return _releasing(result, release)
            release()
            return result

        return run


def _releasing(replies: Iterator[T], release: Callable[[], None]) -> Iterator[T]:
    try:
        yield from replies
    finally:
        release()


# --- stream timeouts ------------------------------------------------------------------------------

_FRAME, _END, _ERROR = "frame", "end", "error"


def timed_frames(frames: Iterator[T], *, idle_s: float, total_s: float) -> Generator[T, None, None]:
    """``frames`` as they arrive; :class:`LimitExceeded` once none came for ``idle_s`` seconds or
    reading took ``total_s`` in all.

    A gRPC request iterator has no timeout, so a helper thread reads it and the handler waits on
    a queue with one; the handler can then answer the caller with a status. The helper ends with
    the call (the status sent ends its read). Close the generator when done with it.
    """
    box: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=2)
    stop = threading.Event()
    pump = threading.Thread(target=_pump, args=(frames, box, stop), daemon=True, name="step-read")
    pump.start()
    end = time.monotonic() + total_s
    try:
        while True:
            kind, item = _next_item(box, idle_s=idle_s, end=end, total_s=total_s)
            if kind == _END:
                return
            if kind == _ERROR:
                raise item
            yield item
    finally:
        stop.set()


def _next_item(
    box: queue.Queue[tuple[str, Any]], *, idle_s: float, end: float, total_s: float
) -> tuple[str, Any]:
    left = end - time.monotonic()
    try:
        return box.get(timeout=max(0.0, min(idle_s, left)))
    except queue.Empty:
        if idle_s < left:
            raise LimitExceeded(
                f"step request sent nothing for {idle_s:g} s (STEP_STREAM_IDLE_TIMEOUT_S); "
                "the silo ended the call"
            ) from None
        raise LimitExceeded(
            f"step request took longer than {total_s:g} s to arrive "
            "(STEP_STREAM_MAX_TRANSFER_S); the silo ended the call"
        ) from None


def _pump(frames: Iterator[Any], box: queue.Queue[tuple[str, Any]], stop: threading.Event) -> None:
    try:
        for frame in frames:
            if not _put(box, (_FRAME, frame), stop):
                return
        _put(box, (_END, None), stop)
    except BaseException as err:  # noqa: BLE001 - handed to the handler thread, which raises it
        _put(box, (_ERROR, err), stop)


def _put(box: queue.Queue[tuple[str, Any]], item: tuple[str, Any], stop: threading.Event) -> bool:
    """Hand ``item`` over unless the handler gave up (then the frames are dropped)."""
    while not stop.is_set():
        try:
            box.put(item, timeout=0.25)
            return True
        except queue.Full:
            continue
    return False


def paced_replies(
    replies: Iterable[T], cancel: Callable[[], None], *, idle_s: float, total_s: float
) -> Generator[T, None, None]:
    """``replies``, calling ``cancel`` if the caller takes none for ``idle_s`` seconds or all of
    them take longer than ``total_s``: gRPC sends a frame only as fast as the caller reads, and
    a caller that stopped reading would hold the thread (it is not reading, so no status can
    reach it; cancelling frees the thread)."""
    end = time.monotonic() + total_s
    for reply in replies:
        wait = max(0.0, min(idle_s, end - time.monotonic()))
        timer = threading.Timer(wait, cancel)
        timer.daemon = True
        timer.start()
        try:
            yield reply  # the caller resumes us once gRPC has sent this frame
        finally:
            timer.cancel()
