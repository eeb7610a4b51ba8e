"""XGBoost's training parameters, shared by vertical SecureBoost and horizontal XGBoost.

Both federated tree models promise "the same training parameters as XGBoost", so their names
live here once, with defaults and bounds from the job schema (:mod:`fedsilo.jobschema`, where a
job step's keys are declared); each protocol adds only its own knobs (Paillier key sizes for
SecureBoost) in a subclass.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Self

from fedsilo.errors import ConfigError
from fedsilo.jobschema import BOOST_PARAMS, Param, check_values, defaults
from fedsilo.ml.tree import TreeParams

__all__ = ["BoostParams"]


_D = defaults(BOOST_PARAMS)


@dataclass(frozen=True, kw_only=True)
class BoostParams:
    """XGBoost's names and defaults; bounds and help in :data:`fedsilo.jobschema.BOOST_PARAMS`.

    ``missing``: a value meaning "missing" besides NaN (None: NaN only; JSON has no NaN).
    ``base_score``: starting probability; None = the label mean (XGBoost 3.x's estimate).
    ``early_stopping_rounds``: stop when the validation log-loss has not improved for that many
    trees and keep the best iteration (needs validation rows).
    """

    #: how error messages name the parameters ("SecureBoost parameters: 'max_depth' must ...")
    LABEL: ClassVar[str] = "boosting"
    #: the declarations every field is checked against (one per field, same name)
    PARAMS: ClassVar[tuple[Param, ...]] = BOOST_PARAMS

    n_estimators: int = _D["n_estimators"]
    max_depth: int = _D["max_depth"]
    learning_rate: float = _D["learning_rate"]
    reg_lambda: float = _D["reg_lambda"]
    gamma: float = _D["gamma"]
    min_child_weight: float = _D["min_child_weight"]
    subsample: float = _D["subsample"]
    colsample_bytree: float = _D["colsample_bytree"]
    max_bin: int = _D["max_bin"]
    base_score: float | None = _D["base_score"]
    missing: float | None = _D["missing"]
    early_stopping_rounds: int | None = _D["early_stopping_rounds"]
    seed: int = _D["seed"]

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Every field against its declaration: type and bounds (one line naming the key)."""
        check_values(self.PARAMS, self.to_dict(), f"{self.LABEL} parameters")

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
