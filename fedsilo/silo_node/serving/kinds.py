"""Per model kind, a served model's two halves: a passive silo's answer and the label holder's
combination, on the same functions batch scoring uses (so online scores equal batch scores).

* SecureBoost: a passive silo answers the side every row takes at each split node it owns
  (:class:`~fedsilo.protocols.secureboost.compiled.CompiledSplits`); the label holder walks the
  trees (:class:`~fedsilo.protocols.secureboost.compiled.CompiledForest`). A missing party's
  nodes take the model's default directions, exactly as a missing value does.
* Vertical LR: a passive silo answers its partial score masked by
  :func:`~fedsilo.protocols.lr.vertical.mask_partial` under the seeds its serve step agreed, so
  only the sum over passive silos opens. The masks cancel only in the full sum: if one passive
  silo is missing, every passive contribution is dropped (their features all count as missing).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from fedsilo.errors import ProtocolError
from fedsilo.message import Message
from fedsilo.ml.mathfn import sigmoid
from fedsilo.protocols.lr.vertical import VerticalModelPart, mask_partial, sum_masked_partials
from fedsilo.protocols.secureboost.compiled import CompiledForest, CompiledSplits
from fedsilo.protocols.secureboost.model import SecureBoostModel, SplitTable
from fedsilo.protocols.serve.online import PART

__all__ = ["ActiveModel", "PassiveModel", "active_model", "passive_model"]


class PassiveModel(Protocol):
    def part(self, x: np.ndarray, label: str) -> Message: ...


class ActiveModel(Protocol):
    #: True when the parts only open in their full sum (vertical LR)
    joint: bool

    def scores(self, x: np.ndarray, parts: Mapping[str, Message], label: str) -> np.ndarray: ...


@dataclass(frozen=True)
class _PassiveTrees:
    splits: CompiledSplits

    def part(self, x: np.ndarray, label: str) -> Message:
        left = self.splits.left(x)
        return Message(
            PART,
            meta={"label": label, "rows": len(x)},
            arrays={"keys": self.splits.keys, "left": np.packbits(left, axis=None)},
        )


class _ActiveTrees:
    joint = False

    def __init__(self, payload: dict[str, Any]) -> None:
        model = SecureBoostModel.from_dict(payload["model"])
        self.forest = CompiledForest(model)
        self.own = CompiledSplits.of(model.own_splits)
        self.own_cols = self.forest.check_keys(model.own_party, self.own.keys)

    def scores(self, x: np.ndarray, parts: Mapping[str, Message], label: str) -> np.ndarray:
        n = len(x)
        decisions = self.forest.decisions(n)
        decisions[:, self.own_cols] = self.own.left(x)
        for party, msg in parts.items():
            cols = self.forest.check_keys(party, msg.array("keys").reshape(-1, 2))
            bits = msg.array("left")
            if bits.dtype != np.uint8 or len(bits) != (n * len(cols) + 7) // 8:
                raise ProtocolError(f"party '{party}' answered for the wrong number of rows")
            decisions[:, cols] = np.unpackbits(bits, count=n * len(cols)).reshape(n, len(cols))
        return self.forest.predict_proba(decisions)


@dataclass(frozen=True)
class _PassiveLinear:
    part_model: VerticalModelPart
    party: str
    seeds: Mapping[str, bytes]

    def part(self, x: np.ndarray, label: str) -> Message:
        msg = mask_partial(self.part_model.partial_score(x), self.party, dict(self.seeds), label)
        msg.kind = PART
        return msg


class _ActiveLinear:
    joint = True

    def __init__(self, payload: dict[str, Any]) -> None:
        self.part_model = VerticalModelPart.from_dict(payload["part"])
        self.passives = sorted(str(p) for p in payload.get("passive_parties", []))

    def scores(self, x: np.ndarray, parts: Mapping[str, Message], label: str) -> np.ndarray:
        z = self.part_model.partial_score(x)
        if parts:
            z = z + sum_masked_partials(dict(parts), self.passives, label, len(x), kind=PART)
        return np.asarray(sigmoid(z))


def passive_model(
    kind: str, payload: dict[str, Any], party: str, seeds: Mapping[str, bytes]
) -> PassiveModel:
    if kind == "secureboost":
        return _PassiveTrees(CompiledSplits.of(SplitTable.from_dict(payload["part"])))
    if kind == "lr":
        return _PassiveLinear(VerticalModelPart.from_dict(payload["part"]), party, seeds)
    raise ProtocolError(f"model kind '{kind[:40]}' cannot be served online")


def active_model(kind: str, payload: dict[str, Any]) -> ActiveModel:
    if kind == "secureboost":
        return _ActiveTrees(payload)
    if kind == "lr":
        return _ActiveLinear(payload)
    raise ProtocolError(f"model kind '{kind[:40]}' cannot be served online")
