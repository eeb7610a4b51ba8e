"""How a dataset's ids are written, without showing one (``fedsilo silo check``).

Two silos' ids match in PSI only when they are written alike (``"C00042"`` is not ``"c00042 "``).
The profile lets operators compare that before a job: the id type, lengths, the letter case,
and the most common *formats* of a sample of ids (every digit shown as ``9``, every upper-case
letter as ``A``, every lower-case one as ``a``, other characters kept), plus a few sample ids
as truncated SHA-256 hashes of their normalised text, so two operators can check that the same
customer hashes alike at both silos. A hash of a guessable id (a short number) can be reversed
by trying every id: share hashes only with whoever may know the ids anyway.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

from sqlalchemy import select

from fedsilo import settings
from fedsilo.silo_node.data import SiloData, normalise_id

__all__ = ["id_format", "id_profile"]

#: sample ids shown (hashed) per dataset, and formats listed.
SAMPLE_HASHES = 3
TOP_FORMATS = 3
_KIND_NAMES = {"int": "integer", "text": "text", "expr": "text (padded or UUID)"}


def id_format(value: str) -> str:
    """``"C-00042"`` -> ``"A-99999"``: digits ``9``, letters ``A`` / ``a``, the rest kept."""
    out = []
    for ch in value:
        if ch.isdigit():
            out.append("9")
        elif ch.isalpha():
            out.append("A" if ch.isupper() else "a" if ch.islower() else "?")
        else:
            out.append(ch)
    return "".join(out)


def id_hash(value: str) -> str:
    """The first 12 hex digits of SHA-256 of the id's normalised text."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:12]


def _case(ids: list[str]) -> str:
    letters = "".join(ch for i in ids for ch in i if ch.isalpha())
    if not letters:
        return "no letters"
    if letters.isupper():
        return "upper"
    if letters.islower():
        return "lower"
    return "mixed"


def id_profile(
    data: SiloData, dataset: str, sample_rows: int = settings.VALIDATE_SAMPLE_ROWS
) -> dict[str, Any]:
    """Type, lengths, case and formats of the first ``sample_rows`` ids, hashed samples."""
    ds = data.dataset(dataset)
    src = data.source(ds)
    stmt = select(src.c[ds.id_column]).select_from(src).limit(sample_rows)
    with data.engine.connect() as conn:
        raw = [r for (r,) in conn.execute(stmt)]
    ids = [normalise_id(v) for v in raw]
    padded = sum(1 for v in raw if isinstance(v, str) and v != v.strip())
    formats = Counter(id_format(i) for i in ids)
    return {
        "type": _KIND_NAMES[data.id_kind(ds)],
        "sampled": len(ids),
        "length": [min(map(len, ids), default=0), max(map(len, ids), default=0)],
        "case": _case(ids),
        "padded": padded,
        "formats": [
            {"format": f, "share": round(n / len(ids), 3)}
            for f, n in formats.most_common(TOP_FORMATS)
        ],
        "sample_sha256_12": [id_hash(i) for i in ids[:SAMPLE_HASHES]],
    }
