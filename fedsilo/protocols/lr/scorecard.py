"""The scorecard: vertical LR on WOE-transformed characteristics, its coefficients as points.

With ``transform = "woe"`` every silo replaces each of its own columns by the WOE of its bin,
from the last woe step of the job (:func:`fedsilo.ml.woe.woe_matrix`), trains as usual and stores
with its part its bins, their WOE and its points table (:func:`fedsilo.ml.woe.points_table`); the
label holder also stores the base points. Prediction transforms the raw columns
the same way (:func:`woe_input`). ``docs/scorecard.md`` has the workflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedsilo.errors import DataError
from fedsilo.ml.woe import Characteristic, ScoreScale, points_table, woe_matrix
from fedsilo.protocols.lr.vertical import VerticalModelPart

__all__ = ["ScorecardInputs", "party_points", "woe_input"]


@dataclass(frozen=True)
class ScorecardInputs:
    """One silo's WOE tables for its training columns, and the job's points scale."""

    characteristics: list[Characteristic]
    woe: list[list[float]]
    scale: ScoreScale

    def model_payload(self, part: VerticalModelPart, label_holder: bool) -> dict[str, Any]:
        """What the model part stores beside the coefficients: the WOE tables (to transform at
        prediction), this silo's points table and the scale; the label holder also the base."""
        std = part.standardizer
        table = points_table(
            self.characteristics,
            self.woe,
            part.coef_standardised,
            std.mean,
            std.scale,
            self.scale.factor,
        )
        card: dict[str, Any] = {
            "party": part.party,
            "characteristics": table,
            "scale": self.scale.to_dict(),
        }
        if label_holder:
            card["base_points"] = (
                self.scale.offset - self.scale.factor * part.intercept_standardised
            )
        return {
            "woe": {
                "characteristics": [c.to_dict() for c in self.characteristics],
                "woe": [[None if np.isnan(v) else v for v in row] for row in self.woe],
            },
            "scorecard": card,
        }


def _read_woe(block: Mapping[str, Any]) -> tuple[list[Characteristic], list[list[float]]]:
    try:
        chars = [Characteristic.from_dict(c) for c in block["characteristics"]]
        woe = [[np.nan if v is None else float(v) for v in row] for row in block["woe"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"bad scorecard WOE tables in model: {exc}") from None
    return chars, woe


def woe_input(payload: Mapping[str, Any], x: np.ndarray) -> np.ndarray:
    """A scorecard part's input: the raw columns through its WOE tables; other parts: ``x``."""
    block = payload.get("woe")
    if not isinstance(block, Mapping):
        return x
    chars, woe = _read_woe(block)
    return woe_matrix(chars, woe, x)


def party_points(payload: Mapping[str, Any], x: np.ndarray) -> np.ndarray | None:
    """This party's points per row of a scorecard part (the label holder's with its base
    points): ``-factor`` times its term of the linear predictor. None for another model."""
    card = payload.get("scorecard")
    if not isinstance(card, Mapping):
        return None
    part = VerticalModelPart.from_dict(payload["part"])
    factor = ScoreScale.from_dict(card["scale"]).factor
    own = part.partial_score(woe_input(payload, x)) - part.intercept_standardised
    return np.asarray(float(card.get("base_points", 0.0)) - factor * own)
