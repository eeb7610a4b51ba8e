"""A serving silo's rows in memory, found by id (label holder) or by keyed pseudonym (passive).

Built from the silo's database (the dataset the serve step named, the model's columns) and
rebuilt in the background every ``SERVING_INDEX_REFRESH_S``, so new customers become
scoreable without a restart while a lookup never waits for the database.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import numpy as np

from fedsilo import settings
from fedsilo.protocols.serve.online import pseudonyms
from fedsilo.silo_node.context import SiloContext

__all__ = ["FeatureIndex"]

log = logging.getLogger(__name__)


class FeatureIndex:
    """``lookup(keys) -> (X, held)``; keys are ids, or pseudonym bytes when ``key`` is given."""

    def __init__(
        self, ctx: SiloContext, dataset: str, columns: Sequence[str], key: bytes | None
    ) -> None:
        self._ctx, self._dataset, self._columns, self._key = ctx, dataset, list(columns), key
        self._rows: dict[bytes | str, int] = {}
        self._x = np.empty((0, len(self._columns)))
        self._built = 0.0
        self._lock = threading.Lock()
        self._refreshing = False
        self.rebuild()

    @property
    def size(self) -> int:
        return len(self._rows)

    def rebuild(self) -> None:
        ids = [i for chunk in self._ctx.data.iter_ids(self._dataset) for i in chunk]
        if self._columns:
            x, _ = self._ctx.data.load_dataset(self._dataset, self._columns, with_label=False)
        else:
            x = np.empty((len(ids), 0))
        keys: list[bytes | str]
        if self._key is None:
            keys = list(ids)
        else:
            flat = pseudonyms(self._key, ids).tobytes()
            width = settings.SERVING_PSEUDONYM_BYTES
            keys = [flat[i * width : (i + 1) * width] for i in range(len(ids))]
        rows: dict[bytes | str, int] = {k: r for r, k in enumerate(keys)}
        with self._lock:
            self._rows, self._x, self._built = rows, x, time.monotonic()

    def _maybe_refresh(self) -> None:
        if time.monotonic() - self._built < settings.SERVING_INDEX_REFRESH_S or self._refreshing:
            return
        self._refreshing = True

        def run() -> None:
            try:
                self.rebuild()
            except Exception:
                log.exception("could not refresh the serving index of '%s'", self._dataset)
            finally:
                self._refreshing = False

        threading.Thread(target=run, daemon=True, name="serving-index").start()

    def lookup(self, keys: Sequence[bytes | str]) -> tuple[np.ndarray, np.ndarray]:
        """``(X, held)``: the rows of ``keys`` (NaN where not held) and which are held."""
        self._maybe_refresh()
        with self._lock:
            rows, x = self._rows, self._x
        pos = np.fromiter((rows.get(k, -1) for k in keys), dtype=np.intp, count=len(keys))
        held = pos >= 0
        out = np.full((len(keys), x.shape[1]), np.nan)
        out[held] = x[pos[held]]
        return out, held

    def lookup_pseudonyms(self, pseudo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        flat, width = pseudo.tobytes(), pseudo.shape[1]
        return self.lookup([flat[i * width : (i + 1) * width] for i in range(len(pseudo))])
