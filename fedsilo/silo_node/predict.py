"""Federated prediction, shared by batch scoring and evaluation.

Each model kind registers one :class:`Predictor`. The framework does the plumbing once: it loads
the silo's model part (JSON, with the ``columns`` it was trained on), reads exactly those columns
for a range of aligned rows, and calls the predictor's pure functions:

- ``part(payload, X) -> Message`` at every silo that holds part of the model but not the labels:
  what the label holder needs to finish the prediction (e.g. which way each row goes at the
  tree nodes this silo owns);
- ``combine(payload, X, parts) -> scores`` at the label holder, with the other silos' parts.

A whole model (horizontal kinds) has no ``part``: the label holder scores alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedsilo.errors import NotFound
from fedsilo.message import Message
from fedsilo.silo_node.context import SiloContext
from fedsilo.silo_node.session import JobSession

__all__ = ["Predictor", "get_predictor", "load_part", "read_range", "register_predictor"]

PartFn = Callable[[dict[str, Any], np.ndarray], Message]
CombineFn = Callable[[dict[str, Any], np.ndarray, dict[str, Message]], np.ndarray]


@dataclass(frozen=True)
class Predictor:
    kind: str
    combine: CombineFn
    part: PartFn | None = None


_PREDICTORS: dict[str, Predictor] = {}


def register_predictor(predictor: Predictor) -> Predictor:
    _PREDICTORS[predictor.kind] = predictor
    return predictor


def get_predictor(kind: str) -> Predictor:
    try:
        return _PREDICTORS[kind]
    except KeyError:
        raise NotFound(f"no predictor for model kind '{kind[:40]}'") from None


def load_part(ctx: SiloContext, model_id: str) -> tuple[str, dict[str, Any]]:
    """``(kind, payload)`` of this silo's stored part of ``model_id``."""
    part = ctx.store.load_model_part(model_id)
    return part.kind, part.payload


def read_range(ctx: SiloContext, session: JobSession, payload: dict[str, Any], alignment: str,
               start: int, stop: int) -> np.ndarray:
    """The model's columns for aligned rows ``[start, stop)`` of ``alignment``."""
    columns = [str(c) for c in payload.get("columns", [])]
    if not columns:
        return np.empty((stop - start, 0))
    return ctx.data.load_aligned(session.dataset, alignment, columns, positions=(start, stop))
