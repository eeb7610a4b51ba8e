"""XGBoost's training parameters, shared by vertical SecureBoost and horizontal XGBoost.

Both federated tree models promise "the same training parameters as XGBoost", so their names,
defaults and checks live here once; each protocol adds only its own knobs (Paillier key sizes
for SecureBoost) in a subclass.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Self

from fedsilo import settings
from fedsilo.errors import ConfigError
from fedsilo.ml.tree import TreeParams

__all__ = ["BoostParams"]


@dataclass(frozen=True, kw_only=True)
class BoostParams:
    """XGBoost's names and defaults.

    ``missing``: a value meaning "missing" besides NaN (None: NaN only; JSON has no NaN).
    ``base_score``: starting probability; None = the label mean (XGBoost 3.x's estimate).
    ``early_stopping_rounds``: stop when the validation log-loss has not improved for that many
    trees and keep the best iteration (needs validation rows).
    """

    #: how error messages name the parameters ("invalid SecureBoost parameter(s): ...")
    LABEL: ClassVar[str] = "boosting"

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

    def __post_init__(self) -> None:
        self.validate()

    def checks(self) -> list[tuple[bool, str]]:
        """``(ok, parameter name)`` pairs; subclasses extend the list."""
        return [
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
            (self.missing is None or math.isfinite(self.missing), "missing"),
        ]

    def validate(self) -> None:
        bad = [name for ok, name in self.checks() if not ok]
        if bad:
            raise ConfigError(f"invalid {self.LABEL} parameter(s): {', '.join(bad)}")

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
    def from_dict(cls, d: Mapping[str, Any]) -> Self:
        """Parameters from a job step's table; unknown keys and bad types are refused."""
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown {cls.LABEL} parameter(s): {', '.join(sorted(unknown))}")
        try:
            return cls(**dict(d))
        except TypeError as exc:
            raise ConfigError(f"bad {cls.LABEL} parameters: {exc}") from None
