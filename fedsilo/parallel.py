"""The one process pool of a fedsilo process.

Protocol steps are CPU bound (curve and Paillier arithmetic) and Python threads would serialise on
the GIL, so heavy work goes to worker processes. The pool uses the ``spawn`` start method: forking
a process that runs gRPC threads is unsafe. It is created lazily, sized to the machine's cores
(``FEDSILO_WORKERS`` overrides), and shared by every silo node in the process (the demo runs three).
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

__all__ = ["map_chunks", "pool", "split_evenly", "workers"]

T = TypeVar("T")
_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None


def workers() -> int:
    """Number of worker processes: the core count unless ``FEDSILO_WORKERS`` says otherwise."""
    env = os.environ.get("FEDSILO_WORKERS", "")
    return max(1, int(env)) if env.isdigit() else max(1, os.cpu_count() or 1)


def pool() -> ProcessPoolExecutor:
    """The shared pool, created on first use."""
    global _pool
    with _lock:
        if _pool is None:
            ctx = multiprocessing.get_context("spawn")
            _pool = ProcessPoolExecutor(max_workers=workers(), mp_context=ctx)
            atexit.register(shutdown)
        return _pool


def shutdown() -> None:
    global _pool
    with _lock:
        if _pool is not None:
            _pool.shutdown(wait=False, cancel_futures=True)
            _pool = None


def split_evenly(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous, near-equal ``[start, stop)`` ranges covering ``range(n)``."""
    parts = max(1, min(parts, n)) if n else 1
    bounds = [n * i // parts for i in range(parts + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(parts)]


def map_chunks(fn: Callable[..., T], chunks: Iterable[Sequence[Any]] | Iterable[Any]) -> list[T]:
    """Run ``fn`` on each chunk in the pool, results in order; inline when there is one worker."""
    items = list(chunks)
    if workers() == 1 or len(items) <= 1:
        return [fn(*c) if isinstance(c, tuple) else fn(c) for c in items]
    futures = [
        pool().submit(fn, *c) if isinstance(c, tuple) else pool().submit(fn, c) for c in items
    ]
    return [f.result() for f in futures]
