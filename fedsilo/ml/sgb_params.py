"""SecureBoost training parameters: XGBoost's (``BoostParams``) plus the Paillier knobs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from fedsilo import settings
from fedsilo.ml.boost_params import BoostParams

__all__ = ["STEP_KEYS", "SecureBoostParams", "secureboost_params"]

#: keys of a ``secureboost`` job step that are not training parameters
STEP_KEYS = frozenset({"kind", "alignment", "valid_alignment", "name"})


@dataclass(frozen=True, kw_only=True)
class SecureBoostParams(BoostParams):
    """XGBoost's parameters plus the encryption ones.

    ``early_stopping_rounds`` needs validation rows at the label holder.
    ``insecure_min_key_bits`` lowers the key-size floor (tests only).
    """

    LABEL: ClassVar[str] = "SecureBoost"

    key_bits: int = settings.PAILLIER_KEY_BITS
    insecure_min_key_bits: int | None = None
    precision_bits: int = settings.SECUREBOOST_PRECISION_BITS
    binning: str = "xgboost"

    def checks(self) -> list[tuple[bool, str]]:
        return [
            *super().checks(),
            (8 <= self.precision_bits <= 40, "precision_bits"),
            (self.binning in ("xgboost", "quantile"), "binning"),
        ]


def secureboost_params(step: Mapping[str, Any]) -> SecureBoostParams:
    """The training parameters of a ``secureboost`` job step (its flat keys, checked)."""
    return SecureBoostParams.from_dict({k: v for k, v in step.items() if k not in STEP_KEYS})
