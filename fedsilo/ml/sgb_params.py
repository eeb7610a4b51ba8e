"""SecureBoost training parameters (XGBoost's names and defaults where XGBoost has them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from fedsilo import settings
from fedsilo.errors import ConfigError
from fedsilo.ml.tree import TreeParams

__all__ = ["SecureBoostParams"]


@dataclass(frozen=True, kw_only=True)
class SecureBoostParams:
    """Training parameters, with XGBoost's names and defaults where XGBoost has them.

    ``missing=None`` means NaN (JSON has no NaN). ``early_stopping_rounds`` needs validation
    rows at the label holder. ``insecure_min_key_bits`` lowers the key-size floor (tests only).
    """

    n_estimators: int = 100
    max_depth: int = 6
    learning_rate: float = 0.3
    reg_lambda: float = 1.0
    gamma: float = 0.0
    min_child_weight: float = 1.0
    subsample: float = 1.0
    colsample_bytree: float = 1.0
    max_bin: int = 256
    base_score: float | None = None
    missing: float | None = None
    early_stopping_rounds: int | None = None
    seed: int = 0
    key_bits: int = settings.PAILLIER_KEY_BITS
    insecure_min_key_bits: int | None = None
    precision_bits: int = settings.SECUREBOOST_PRECISION_BITS
    binning: str = "xgboost"

    def validate(self) -> None:
        checks = [
            (1 <= self.n_estimators <= settings.SECUREBOOST_MAX_TREES, "n_estimators"),
            (1 <= self.max_depth <= 16, "max_depth"),
            (0 < self.learning_rate <= 1, "learning_rate"),
            (self.reg_lambda >= 0 and self.gamma >= 0, "reg_lambda/gamma"),
            (self.min_child_weight >= 0, "min_child_weight"),
            (0 < self.subsample <= 1 and 0 < self.colsample_bytree <= 1, "subsample/colsample"),
            (2 <= self.max_bin <= settings.SECUREBOOST_MAX_BIN, "max_bin"),
            (self.base_score is None or 0 < self.base_score < 1, "base_score"),
            (
                self.early_stopping_rounds is None or self.early_stopping_rounds >= 1,
                "early_stopping_rounds",
            ),
            (8 <= self.precision_bits <= 40, "precision_bits"),
            (self.binning in ("xgboost", "quantile"), "binning"),
        ]
        bad = [name for ok, name in checks if not ok]
        if bad:
            raise ConfigError(f"invalid SecureBoost parameter(s): {', '.join(bad)}")

    def tree_params(self) -> TreeParams:
        return TreeParams(
            max_depth=self.max_depth,
            learning_rate=self.learning_rate,
            reg_lambda=self.reg_lambda,
            gamma=self.gamma,
            min_child_weight=self.min_child_weight,
        )

    @property
    def missing_value(self) -> float:
        return float("nan") if self.missing is None else float(self.missing)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SecureBoostParams:
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown SecureBoost parameter(s): {', '.join(sorted(unknown))}")
        try:
            params = cls(**dict(d))
        except TypeError as exc:
            raise ConfigError(f"bad SecureBoost parameters: {exc}") from None
        params.validate()
        return params
