"""What vertical and horizontal logistic regression share: config, schedule, scaling, loss.

Both forms minimise the same objective, the one scikit-learn's ``LogisticRegression`` minimises
up to a constant factor::

    (1/N) * sum_i s_i * logloss(y_i, w.x_i + b)  +  (l2 / 2) * ||w||^2        (b not penalised)

where ``s_i`` is the class weight of row ``i``. scikit-learn writes ``C * sum_i s_i * logloss +
||w||^2 / 2``, so the same model is ``C = 1 / (l2 * N)`` (:func:`sklearn_c`). Features are
standardised before training (each silo its own columns, :class:`Standardizer`), which is what
makes one learning rate fit every feature; reported coefficients are mapped back to raw units.

Everything here is plain numpy; nothing knows about parties or transport.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Literal, Self

import numpy as np
import numpy.typing as npt

from fedsilo import settings
from fedsilo.errors import ConfigError, DataError
from fedsilo.jobschema import HLR_PARAMS, LR_PARAMS, Param, check_step, check_values, defaults
from fedsilo.ml.mathfn import sigmoid  # re-exported: its home is mathfn

__all__ = [
    "LRConfig",
    "Standardizer",
    "epoch_batches",
    "learning_rate",
    "log_loss",
    "parse_model_json",
    "read_standardised",
    "sample_weights",
    "sigmoid",
    "sklearn_c",
    "standardised_json",
]

FloatArray = npt.NDArray[np.float64]
Schedule = Literal["constant", "step", "inverse"]
_D = defaults(HLR_PARAMS)
_LR_D = defaults(LR_PARAMS)


@dataclass(frozen=True, kw_only=True)
class LRConfig:
    """Training knobs of one LR job; every party of the job holds the same values.

    Declared (defaults, bounds, help) in :data:`fedsilo.jobschema.LR_PARAMS`, scikit-learn's
    names where one exists. ``class_weight`` is ``None``, ``"balanced"`` (scikit-learn's
    ``N / (2 * n_class)``) or a ``(w0, w1)`` pair. ``max_iter`` counts epochs (rounds in
    horizontal LR), as scikit-learn's ``SGDClassifier`` does. ``tol`` is a relative decrease of
    the training loss between two epochs (vertical) or a largest coefficient change between two
    rounds (horizontal) below which training stops. ``local_epochs`` only matters for horizontal
    LR.
    """

    #: the declarations every field is checked against (bounds are the same for both forms)
    PARAMS: ClassVar[tuple[Param, ...]] = HLR_PARAMS

    l2: float = _LR_D["l2"]
    learning_rate: float = _LR_D["learning_rate"]
    lr_schedule: Schedule = _LR_D["lr_schedule"]
    lr_decay: float = _LR_D["lr_decay"]
    batch_size: int = _LR_D["batch_size"]
    max_iter: int = _LR_D["max_iter"]
    tol: float = _LR_D["tol"]
    class_weight: str | tuple[float, float] | None = _LR_D["class_weight"]
    local_epochs: int = _D["local_epochs"]
    seed: int = _LR_D["seed"]

    def __post_init__(self) -> None:
        check_values(self.PARAMS, asdict(self), "LR parameters")

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Self:
        """Build from parameter values (a model record, a test): unknown keys and wrong types
        are ConfigErrors."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(spec) - known)
        if unknown:
            raise ConfigError(f"unknown LR option(s): {', '.join(unknown)}")
        values = dict(spec)
        if isinstance(values.get("class_weight"), list):
            values["class_weight"] = tuple(values["class_weight"])
        return cls(**values)

    @classmethod
    def from_step(cls, step: Mapping[str, Any], index: int | None = None) -> Self:
        """The parameters of an ``lr`` / ``hlr`` job step (flat keys, checked by the job schema;
        ``index`` names the step in errors)."""
        values = check_step(step, index)
        return cls.from_spec({f.name: values[f.name] for f in fields(cls) if f.name in values})

    def to_spec(self) -> dict[str, Any]:
        """JSON/TOML-safe form, the inverse of :meth:`from_spec`."""
        out = asdict(self)
        if isinstance(self.class_weight, tuple):
            out["class_weight"] = list(self.class_weight)
        return out


def sklearn_c(l2: float, n_rows: int) -> float:
    """scikit-learn's ``C`` for the same objective: ``1 / (l2 * N)``."""
    return 1.0 / (l2 * n_rows)


def learning_rate(config: LRConfig, epoch: int) -> float:
    """Step size of ``epoch`` (0-based; a round in horizontal LR).

    ``step`` multiplies by ``lr_decay`` every epoch, ``inverse`` divides by
    ``1 + lr_decay * epoch``: mini-batch gradients are noisy, and a decaying step is what lets
    SGD settle at the optimum instead of circling it.
    """
    if config.lr_schedule == "step":
        return float(config.learning_rate * config.lr_decay**epoch)
    if config.lr_schedule == "inverse":
        return float(config.learning_rate / (1.0 + config.lr_decay * epoch))
    return float(config.learning_rate)


def sample_weights(y: npt.ArrayLike, class_weight: str | tuple[float, float] | None) -> FloatArray:
    """Per-row weights from labels; ``balanced`` is ``N / (2 * n_class)`` like scikit-learn."""
    labels = np.asarray(y)
    if class_weight is None:
        return np.ones(labels.shape[0])
    if class_weight == "balanced":
        n_pos = int(np.count_nonzero(labels == 1))
        n_neg = labels.shape[0] - n_pos
        if n_pos == 0 or n_neg == 0:
            raise DataError("balanced class weights need both classes in the training rows")
        w0, w1 = labels.shape[0] / (2.0 * n_neg), labels.shape[0] / (2.0 * n_pos)
    else:
        w0, w1 = (float(v) for v in class_weight)
    return np.where(labels == 1, w1, w0).astype(np.float64)


def log_loss(z: FloatArray, y: FloatArray, weights: FloatArray) -> float:
    """Weighted mean log loss of linear predictors ``z`` (stable for large ``|z|``)."""
    per_row = np.logaddexp(0.0, z) - y * z
    return float(np.sum(weights * per_row) / max(len(z), 1))


def epoch_batches(
    n_rows: int, batch_size: int, epoch: int, seed: int, salt: int = 0
) -> list[npt.NDArray[np.int64]]:
    """Row indices of every mini-batch of ``epoch``, the same at every party.

    The order is derived from public values (job seed, epoch, ``salt``), so parties need not
    exchange it; a horizontal silo salts with its own name because its rows are its own.
    Batches are near-equal and never smaller than ``batch_size`` (the remainder is spread over
    the others): a tiny last batch would let a passive party solve its gradient for the
    residuals of a few rows.
    """
    if n_rows <= 0:
        raise DataError("no training rows")
    order = np.random.default_rng([seed, epoch, salt]).permutation(n_rows)
    n_batches = max(1, n_rows // batch_size)
    return [np.sort(part).astype(np.int64) for part in np.array_split(order, n_batches)]


@dataclass(frozen=True)
class Standardizer:
    """Per-feature centring and scaling, fitted on training rows.

    A constant column gets scale 1 (its standardised value is 0 and its coefficient stays 0).
    """

    mean: FloatArray
    scale: FloatArray

    @classmethod
    def fit(cls, x: npt.ArrayLike) -> Standardizer:
        data = _as_matrix(x)
        return cls.from_moments(data.mean(axis=0), data.var(axis=0))

    @classmethod
    def from_moments(cls, mean: npt.ArrayLike, var: npt.ArrayLike) -> Standardizer:
        m = np.asarray(mean, dtype=np.float64)
        sd = np.sqrt(np.maximum(np.asarray(var, dtype=np.float64), 0.0))
        return cls(mean=m, scale=np.where(sd > settings.LR_MIN_FEATURE_STD, sd, 1.0))

    def transform(self, x: npt.ArrayLike) -> FloatArray:
        data = _as_matrix(x)
        if data.shape[1] != self.mean.shape[0]:
            raise DataError(f"expected {self.mean.shape[0]} feature columns, got {data.shape[1]}")
        return (data - self.mean) / self.scale

    def raw_coefficients(self, coef: FloatArray) -> tuple[FloatArray, float]:
        """Coefficients on raw features, and the offset they add: ``w.z = w_raw.x + offset``."""
        raw = np.asarray(coef, dtype=np.float64) / self.scale
        return raw, float(-np.dot(raw, self.mean))

    def to_json(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Standardizer:
        try:
            mean = np.asarray(data["mean"], dtype=np.float64)
            scale = np.asarray(data["scale"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"bad standardiser in model: {exc}") from None
        if mean.shape != scale.shape or mean.ndim != 1 or np.any(scale <= 0):
            raise DataError("bad standardiser in model: shapes or scales")
        return cls(mean=mean, scale=scale)


def standardised_json(std: Standardizer, coef: FloatArray, intercept: float) -> dict[str, Any]:
    """The ``"standardised"`` block of every LR model's JSON (vertical part, horizontal model):
    one encoding, so both kinds predict and resume from the same numbers."""
    return {"coef": np.asarray(coef).tolist(), "intercept": intercept, **std.to_json()}


def read_standardised(block: Mapping[str, Any]) -> tuple[Standardizer, FloatArray, float]:
    """Standardiser, coefficients and intercept from a :func:`standardised_json` block; a bad
    block raises KeyError, TypeError or ValueError for the caller to name its model."""
    coef = np.asarray(block["coef"], dtype=np.float64)
    return Standardizer.from_json(dict(block)), coef, float(block["intercept"])


def parse_model_json(text: str, what: str) -> Any:
    """``json.loads`` for a stored model: a parse failure is a DataError naming ``what``."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise DataError(f"bad {what}: {exc}") from None


def _as_matrix(x: npt.ArrayLike) -> FloatArray:
    data = np.asarray(x, dtype=np.float64)
    if data.ndim != 2:
        raise DataError(f"expected a 2-d feature matrix, got {data.ndim} dimension(s)")
    if not np.all(np.isfinite(data)):
        raise DataError("feature matrix holds NaN or infinite values")
    return data
