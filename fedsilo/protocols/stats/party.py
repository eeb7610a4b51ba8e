"""One silo's side of the ``stats`` protocol, free of transport: profile, encrypt, cross, open.

The silo methods (``silo.py``) and the in-process runner (``local.py``) drive the same
:class:`StatsParty` through :func:`fedsilo.protocols.stats.conversation.run`. The party releases
nothing its policy does not allow: it is built only when the silo's policy releases statistics,
and every statistic is withheld below the silo's ``min_rows_per_statistic``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fedsilo.errors import PolicyError, ProtocolError
from fedsilo.message import Message
from fedsilo.protocols.stats.correlation import (
    CROSS_PRODUCTS,
    ENCRYPTED_COLUMNS,
    Encrypter,
    cross_products,
)
from fedsilo.protocols.stats.profile import (
    Standardised,
    local_correlation,
    profile_columns,
    standardise,
)

__all__ = ["StatsParams", "StatsParty", "column_labels"]


@dataclass(frozen=True)
class StatsParams:
    """What a silo reads from the accepted step and its own policy."""

    quantiles: tuple[float, ...]
    correlation: bool
    key_bits: int
    min_rows: int
    release_names: bool
    #: lowest Paillier key accepted from a peer (the silo's ``min_paillier_bits``)
    min_key_bits: int


def column_labels(names: Sequence[str], *, release_names: bool) -> list[str]:
    """How a silo's columns are named in what it releases: their names, or ``#i`` when its
    policy does not release feature names (``release_feature_names``)."""
    return list(names) if release_names else [f"#{i}" for i in range(len(names))]


class StatsParty:
    """A silo's columns over the population, and what it may release about them."""

    def __init__(
        self, party: str, x: npt.ArrayLike, names: Sequence[str], params: StatsParams
    ) -> None:
        self.party, self.params = party, params
        self.x = np.asarray(x, dtype=np.float64)
        self.names = list(names)
        self.labels = dict(
            zip(
                self.names,
                column_labels(self.names, release_names=params.release_names),
                strict=True,
            )
        )
        self.std: Standardised | None = None
        self._encrypter: Encrypter | None = None
        self._evaluators: tuple[str, ...] = ()

    @property
    def rows(self) -> int:
        return int(self.x.shape[0])

    def profile(self) -> dict[str, Any]:
        """Released meta: per-column statistics, and the within-silo correlations."""
        p = self.params
        stats = profile_columns(self.x, self.names, p.quantiles, p.min_rows)
        meta: dict[str, Any] = {
            "rows": self.rows,
            "columns": {self.labels[n]: s for n, s in stats.items()},
        }
        if not p.correlation:
            return meta
        std = standardise(self.x, self.names)
        meta["excluded"] = {self.labels[n]: why for n, why in std.excluded.items()}
        if self.rows < p.min_rows:
            meta["correlated"], meta["local"] = [], []
            meta["excluded"] |= {self.labels[n]: "too few rows" for n in std.names}
            return meta
        self.std = std
        meta["correlated"] = [self.labels[n] for n in std.names]
        meta["local"] = local_correlation(std).tolist() if std.names else []
        return meta

    def _standardised(self) -> Standardised:
        if self.std is None or not self.std.names:
            raise ProtocolError("no columns to correlate at this silo (after stats.profile)")
        if self.std.rows < self.params.min_rows:
            raise PolicyError(
                f"a statistic over {self.std.rows} rows is below this silo's minimum of "
                f"{self.params.min_rows}"
            )
        return self.std

    def encrypt(self, evaluators: Sequence[str]) -> Message:
        """``stats.encrypted_columns`` for the silos that will correlate against this one."""
        if self._encrypter is not None:
            raise ProtocolError("this silo already encrypted its columns in this step")
        if not evaluators or self.party in evaluators:
            raise ProtocolError("stats.encrypt needs other silos to send to")
        self._encrypter = Encrypter(
            self._standardised(),
            key_bits=self.params.key_bits,
            insecure_min_bits=self.params.min_key_bits,
        )
        self._evaluators = tuple(evaluators)
        return self._encrypter.message()

    def cross(self, inbox: Mapping[str, Message]) -> dict[str, Message]:
        """``stats.cross_products`` back to every silo whose encrypted columns came in."""
        std = self._standardised()
        if not inbox:
            raise ProtocolError("stats.cross received no encrypted columns")
        return {
            sender: cross_products(
                std, msg.expect(ENCRYPTED_COLUMNS), insecure_min_bits=self.params.min_key_bits
            )
            for sender, msg in inbox.items()
        }

    def open(self, inbox: Mapping[str, Message]) -> dict[str, list[list[float]]]:
        """Released meta: the correlation block with each evaluator (this silo's columns ×
        theirs), from the cross products it was sent."""
        if self._encrypter is None:
            raise ProtocolError("stats.open before stats.encrypt")
        if set(inbox) != set(self._evaluators):
            raise ProtocolError(
                f"expected cross products from {sorted(self._evaluators)}, got {sorted(inbox)}"
            )
        encrypter, self._encrypter = self._encrypter, None
        return {
            sender: encrypter.open(msg.expect(CROSS_PRODUCTS)).tolist()
            for sender, msg in sorted(inbox.items())
        }
