"""Federated prediction, shared by batch scoring and evaluation.

Each model kind registers one :class:`Predictor`. The framework does the plumbing once: it loads
the silo's model part (JSON, with the ``columns`` it was trained on), reads exactly those columns
for a range of aligned rows, and calls the predictor's pure functions:

- ``part(payload, X, request) -> Message`` at every silo that holds part of the model but not
  the labels: what the label holder needs to finish the prediction (e.g. which way each row goes
  at the tree nodes this silo owns);
- ``combine(payload, X, parts, request) -> scores`` at the label holder, with the other silos'
  parts.

``request`` (:class:`PredictRequest`) says which rows of which alignment in which job are being
scored, and gives the secret this silo shares with each other silo of the job: a predictor that
masks its parts (vertical LR with two or more passive silos) derives one-time masks from both,
so the masks of different requests never repeat and cancel only in the label holder's sum.

A whole model (horizontal kinds) has no ``part``: the member that holds it scores alone.

Explanations (``score`` steps with ``reasons``, ``evaluate``'s global importance): a predictor may
add ``explain(payload, X, parts, request) -> Contributions`` at the label holder, from the same
parts, and ``explain_part(payload, X, level, names) -> (meta, arrays)`` at the other silos: what
that silo adds to its part when the accepted step asks for ``explain = level`` ("party" or
"feature") and its policy allows it (``fedsilo/protocols/score/silo.py`` checks). SecureBoost
needs no ``explain_part``: the routes scoring sends are all TreeSHAP needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedsilo.crypto.sealing import JobKeys
from fedsilo.errors import NotFound, ProtocolError
from fedsilo.message import Message
from fedsilo.ml.explain import Contributions
from fedsilo.silo_node.context import SiloContext
from fedsilo.silo_node.session import JobSession

__all__ = [
    "PredictRequest",
    "Predictor",
    "get_predictor",
    "pair_seed",
    "load_part",
    "read_range",
    "register_predictor",
    "register_whole_model",
]

#: personalisation of the pairwise scoring seeds (distinct from the sealing key's own use)
PAIR_SEED_DOMAIN = b"fedsilo.predict.pair-seed.v1"


@dataclass(frozen=True)
class PredictRequest:
    """The context of one prediction request at a silo: job, model, alignment and row range."""

    job_id: str
    model_id: str
    alignment: str
    start: int
    stop: int
    party: str
    keys: JobKeys = field(repr=False, compare=False)

    @property
    def label(self) -> str:
        """Names this request uniquely within the job: a one-time label for masks."""
        return f"score/{self.model_id}/{self.alignment}/{self.start}-{self.stop}"

    def pair_seed(self, peer: str) -> bytes:
        """32 bytes only this silo and ``peer`` know, fresh per job, never sent anywhere.

        Both silos hold per-job X25519 session keys and each other's public halves (SetPeers),
        so their crypto_box shared key is a Diffie-Hellman agreement made in this very job;
        keyed BLAKE2b with a separate personalisation turns it into a seed for masks. The label
        holder and the coordinator lack either secret key (semi-honest coordinator: it relays
        the public keys unchanged, SECURITY.md), so they cannot rebuild the masks.
        """
        return pair_seed(self.keys, peer)


def pair_seed(keys: JobKeys, peer: str) -> bytes:
    """The pairwise scoring seed of this silo and ``peer`` in the job of ``keys``."""
    return keys.derive(peer, PAIR_SEED_DOMAIN)


PartFn = Callable[[dict[str, Any], np.ndarray, PredictRequest], Message]
CombineFn = Callable[[dict[str, Any], np.ndarray, dict[str, Message], PredictRequest], np.ndarray]
ExplainFn = Callable[
    [dict[str, Any], np.ndarray, dict[str, Message], PredictRequest], Contributions
]
#: ``(payload, X, level, names_released) -> (meta, arrays)`` added to a part for explanations
ExplainPartFn = Callable[
    [dict[str, Any], np.ndarray, str, bool], tuple[dict[str, Any], dict[str, np.ndarray]]
]


@dataclass(frozen=True)
class Predictor:
    kind: str
    combine: CombineFn
    part: PartFn | None = None
    explain: ExplainFn | None = None
    explain_part: ExplainPartFn | None = None


_PREDICTORS: dict[str, Predictor] = {}


def register_predictor(predictor: Predictor) -> Predictor:
    _PREDICTORS[predictor.kind] = predictor
    return predictor


def register_whole_model(
    kind: str,
    name: str,
    predict_proba: Callable[[dict[str, Any], np.ndarray], np.ndarray],
) -> Predictor:
    """A whole model (horizontal kinds) scores alone: no part from another silo is accepted."""

    def combine(
        payload: dict[str, Any],
        x: np.ndarray,
        parts: dict[str, Message],
        request: PredictRequest | None = None,
    ) -> np.ndarray:
        if parts:
            raise ProtocolError(f"a {name} model takes no parts from other silos")
        return predict_proba(payload["model"], x)

    return register_predictor(Predictor(kind=kind, combine=combine))


def get_predictor(kind: str) -> Predictor:
    try:
        return _PREDICTORS[kind]
    except KeyError:
        raise NotFound(f"no predictor for model kind '{kind[:40]}'") from None


def load_part(ctx: SiloContext, model_id: str) -> tuple[str, dict[str, Any]]:
    """``(kind, payload)`` of this silo's stored part of ``model_id``."""
    part = ctx.store.load_model_part(model_id)
    return part.kind, part.payload


def read_range(
    ctx: SiloContext,
    session: JobSession,
    payload: dict[str, Any],
    alignment: str,
    start: int,
    stop: int,
) -> np.ndarray:
    """The model's columns for aligned rows ``[start, stop)`` of ``alignment``."""
    columns = [str(c) for c in payload.get("columns", [])]
    if not columns:
        return np.empty((stop - start, 0))
    return ctx.data.load_aligned(session.dataset, alignment, columns, positions=(start, stop))
