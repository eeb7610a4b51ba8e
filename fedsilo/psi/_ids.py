"""The id rule of PSI: which values are ids, and the bytes that get hashed.

Rule (documented in ``docs/leakage.md``): the silo data layer hands PSI ids as ``str`` values
that it has already normalised (trimmed, case-folded or formatted as the dataset's config
says). PSI changes nothing: it encodes each id as UTF-8, exactly. Two silos match an id only if
their data layers produced the same string. A value that is not a ``str`` (a NULL, a number mixed
into a text column), an empty string, an id that cannot be encoded (a lone surrogate) or one
longer than ``settings.PSI_MAX_ID_BYTES`` is bad data and is refused with :class:`DataError`
naming the row, never silently skipped: a skipped row would quietly shrink the intersection.

Ids travel to worker processes packed as one ``bytes`` blob plus an ``int64`` end-offset array, so
IPC moves two buffers instead of a list of Python objects.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedsilo import settings
from fedsilo.errors import DataError

__all__ = ["PackedIds", "pack_ids"]

PackedIds = tuple[bytes, np.ndarray]
"""``(blob, ends)``: id ``i`` is ``blob[ends[i-1]:ends[i]]`` (``ends[-1] == len(blob)``)."""


def _encode(value: object, row: int) -> bytes:
    """One id as UTF-8 bytes, or a DataError that names the row (never the value: it is private)."""
    if type(value) is not str:
        raise DataError(f"PSI id at row {row} is {type(value).__name__}, not text")
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError:
        raise DataError(f"PSI id at row {row} is not valid Unicode text") from None
    if not raw:
        raise DataError(f"PSI id at row {row} is empty")
    if len(raw) > settings.PSI_MAX_ID_BYTES:
        raise DataError(f"PSI id at row {row} is longer than {settings.PSI_MAX_ID_BYTES} bytes")
    return raw


def pack_ids(ids: Sequence[object], first_row: int = 0) -> PackedIds:
    """Validate and pack a batch of ids; ``first_row`` makes error messages name the table row."""
    encoded = [_encode(v, first_row + i) for i, v in enumerate(ids)]
    ends = np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)))
    return b"".join(encoded), ends
