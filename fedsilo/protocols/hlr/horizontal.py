"""Horizontal logistic regression: FedAvg with CKKS secure aggregation, at least three silos.

Silos hold the same features for different customers. Every exchange is a *secure sum*: each silo
encrypts a vector under the job's CKKS key (:mod:`fedsilo.crypto.ckks`), the coordinator adds
the ciphertexts with :func:`aggregate` (it holds only the public context: no secret key), and
every silo decrypts the same sum. One silo makes the key (:meth:`HorizontalSilo.create_keys`) and
sends the secret context to its peers in a ``hlr.secret_context`` message, which the framework
seals to each peer's job key while the coordinator relays it.

Protocol (one :class:`HorizontalSilo` per silo; the coordinator calls :func:`aggregate`)::

    stats 0   [n_k, positives_k]                      -> N, class counts (balanced weights)
    stats 1   [sum_k x / N]                           -> pooled mean mu
    stats 2   [sum_k |x - mu| / N]                    -> mean absolute deviation r (a yardstick)
    stats 3   [sum_k ((x - mu) / r)^2 / N]            -> pooled variance; every silo standardises
    round t   [(n_k / N) * w_k] after local SGD from w -> next global w (FedAvg), until converged

Why four statistic rounds instead of one ``[n, sum x, sum x^2]``: sums are *exact* here.
Inputs are rounded to a ``2**-20`` grid and the decrypted sum is snapped back to it
(:func:`fedsilo.crypto.ckks.decode_fixed`), so every silo gets bit-identical values and no CKKS
noise (which carries information about the secret key) survives into anything a silo releases.
That needs every sum below ~2**33; raw money columns (sum of squares ~1e20) are not, but a mean,
a deviation and a variance in units of that deviation always are.

Two silos are refused (:func:`check_silo_count`): the sum minus one's own input is the other's.
What each party learns is in ``docs/leakage.md`` (section "Logistic regression").
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import tenseal as ts
from sklearn.linear_model import LogisticRegression

from fedsilo import settings
from fedsilo.crypto import ckks
from fedsilo.errors import DataError, PolicyError, ProtocolError
from fedsilo.jobschema import HLR_PARAMS, defaults
from fedsilo.leakage import register_kind
from fedsilo.message import Message
from fedsilo.ml.lr_common import (
    FloatArray,
    LRConfig,
    Standardizer,
    epoch_batches,
    learning_rate,
    log_loss,
    parse_model_json,
    read_standardised,
    sample_weights,
    sigmoid,
    standardised_json,
)

__all__ = [
    "HLRConfig",
    "HorizontalLRModel",
    "HorizontalSilo",
    "RoundResult",
    "SECRET_CONTEXT",
    "STATS_PHASES",
    "SUM",
    "UPDATE",
    "aggregate",
    "check_silo_count",
]

SECRET_CONTEXT = register_kind(
    "hlr.secret_context",
    reveals="the job's CKKS secret key, shared by the silos (sealed: the coordinator relays bytes "
    "it cannot open); nothing about any silo's data",
)
UPDATE = register_kind(
    "hlr.update",
    reveals="to the coordinator: CKKS ciphertexts of one silo's statistics or weighted model "
    "update, unreadable without the silos' secret key",
)
SUM = register_kind(
    "hlr.sum",
    reveals="to every silo: the sum over all silos of the statistic or weighted update of the "
    "round (pooled counts, class counts, means, mean absolute deviations, variances, the "
    "averaged model); with >= 3 silos not any single other silo's value",
)
#: number of statistic rounds before training (see the module docstring).
STATS_PHASES = 4
_MODEL_FORMAT = "fedsilo.lr.horizontal/1"


_HLR_D = defaults(HLR_PARAMS)


@dataclass(frozen=True, kw_only=True)
class HLRConfig(LRConfig):
    """:class:`LRConfig` with FedAvg defaults: ``batch_size`` is the local mini-batch, an
    "epoch" is a round, ``local_epochs`` passes over local data per round, ``tol`` the largest
    coefficient change between rounds that still counts as moving."""

    learning_rate: float = _HLR_D["learning_rate"]
    lr_decay: float = _HLR_D["lr_decay"]
    batch_size: int = _HLR_D["batch_size"]
    max_iter: int = _HLR_D["max_iter"]
    tol: float = _HLR_D["tol"]


def check_silo_count(n_silos: int) -> None:
    """Horizontal LR's use of the one rule, :func:`fedsilo.crypto.ckks.check_silo_count`."""
    ckks.check_silo_count(n_silos, protocol="horizontal LR", summed="update")


@dataclass(frozen=True)
class RoundResult:
    """A silo's view after a round: progress (released, :meth:`to_meta`) and its local loss."""

    round: int
    max_change: float
    converged: bool
    train_loss: float

    def to_meta(self) -> dict[str, Any]:
        """What the silo releases: functions of the global model only (identical at every silo).

        ``train_loss`` is this silo's own loss on its own rows and stays local.
        """
        return {"round": self.round, "max_change": self.max_change, "converged": self.converged}


def _update_message(phase: str, index: int, values: FloatArray, ctx: ts.Context) -> Message:
    encoded = ckks.encode_fixed(values)
    blobs = {f"ct{i}": c for i, c in enumerate(ckks.encrypt_vector(ctx, encoded))}
    return Message(
        UPDATE, meta={"phase": phase, "index": index, "length": int(values.size)}, blobs=blobs
    )


def _ciphertexts(msg: Message) -> list[bytes]:
    names = sorted(msg.blobs, key=lambda n: int(n[2:]) if n[2:].isdigit() else -1)
    if any(not n.startswith("ct") or not n[2:].isdigit() for n in names):
        raise ProtocolError(f"message '{msg.kind}' holds a blob that is not a ciphertext")
    return [msg.blobs[n] for n in names]


def _round_id(msg: Message) -> tuple[str, int, int]:
    try:
        meta = msg.meta
        phase, index, length = str(meta["phase"]), int(meta["index"]), int(meta["length"])
    except (KeyError, TypeError, ValueError):
        raise ProtocolError(f"message '{msg.kind}' lacks phase, index or length") from None
    if not 0 < length <= settings.HLR_MAX_VECTOR_LENGTH or phase not in ("stats", "round"):
        raise ProtocolError(f"message '{msg.kind}' has a bad phase or length")
    return phase, index, length


def aggregate(public_context: bytes, contributions: Sequence[Message]) -> Message:
    """The coordinator's part: add every silo's encrypted vector of the same round.

    Takes the public context (refused if it carries a secret key) and one ``hlr.update`` per
    silo; returns the ``hlr.sum`` every silo decrypts. Refuses too few silos and contributions
    from different rounds or of different lengths.
    """
    check_silo_count(len(contributions))
    ctx = ckks.load_context(public_context, require_secret=False)
    ids = {_round_id(m.expect(UPDATE)) for m in contributions}
    if len(ids) != 1:
        raise ProtocolError("contributions to one secure sum come from different rounds")
    phase, index, length = ids.pop()
    total = ckks.sum_ciphertexts(ctx, [_ciphertexts(m) for m in contributions], length)
    blobs = {f"ct{i}": c for i, c in enumerate(total)}
    meta = {"phase": phase, "index": index, "length": length, "silos": len(contributions)}
    return Message(SUM, meta=meta, blobs=blobs)


@dataclass
class HorizontalLRModel:
    """The whole horizontal model, in raw feature units; exportable, usable from scikit-learn."""

    feature_names: list[str]
    coef: FloatArray
    intercept: float
    standardizer: Standardizer
    coef_standardised: FloatArray
    intercept_standardised: float
    info: dict[str, Any] = field(default_factory=dict)

    def decision_function(self, x: npt.ArrayLike) -> FloatArray:
        z = self.standardizer.transform(x) @ self.coef_standardised
        return np.asarray(z + self.intercept_standardised)

    def predict_proba(self, x: npt.ArrayLike) -> FloatArray:
        """Probability of class 1 for each row (a 1-d array; see :meth:`to_sklearn` for 2-d)."""
        return sigmoid(self.decision_function(x))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form: the exported coefficients file, and what a silo stores."""
        return {
            "format": _MODEL_FORMAT,
            "features": self.feature_names,
            "coef": self.coef.tolist(),
            "intercept": self.intercept,
            "standardised": standardised_json(
                self.standardizer, self.coef_standardised, self.intercept_standardised
            ),
            "info": self.info,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> HorizontalLRModel:
        return cls.from_dict(parse_model_json(text, "horizontal LR model JSON"))

    @classmethod
    def from_dict(cls, data: Any) -> HorizontalLRModel:
        try:
            if data.get("format") != _MODEL_FORMAT:
                raise DataError(f"not a {_MODEL_FORMAT} model")
            std, coef_std, intercept_std = read_standardised(data["standardised"])
            model = cls(
                feature_names=[str(f) for f in data["features"]],
                coef=np.asarray(data["coef"], dtype=np.float64),
                intercept=float(data["intercept"]),
                standardizer=std,
                coef_standardised=coef_std,
                intercept_standardised=intercept_std,
                info=dict(data.get("info", {})),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DataError(f"bad horizontal LR model JSON: {exc}") from None
        if not len(model.feature_names) == model.coef.size == model.coef_standardised.size:
            raise DataError("bad horizontal LR model JSON: feature and coefficient counts differ")
        return model

    def to_sklearn(self) -> LogisticRegression:
        """A fitted ``LogisticRegression`` on raw features with the same predictions."""
        est = LogisticRegression(C=float(self.info.get("sklearn_C", 1.0)))
        est.classes_ = np.array([0, 1])
        est.coef_ = self.coef.reshape(1, -1).copy()
        est.intercept_ = np.array([self.intercept])
        est.n_features_in_ = int(self.coef.size)
        est.n_iter_ = np.array([int(self.info.get("rounds", 0))], dtype=np.int32)
        return est


class HorizontalSilo:
    """One silo's side of horizontal LR: its rows, its copy of the key, the global weights."""

    def __init__(
        self,
        x: npt.ArrayLike,
        y: npt.ArrayLike,
        *,
        feature_names: Sequence[str],
        config: HLRConfig,
        party: str,
        n_silos: int,
    ) -> None:
        check_silo_count(n_silos)
        self.n_silos = n_silos
        self._x_raw = np.asarray(x, dtype=np.float64)
        self._y = np.asarray(y, dtype=np.float64)
        self._check_data(len(feature_names))
        self.feature_names = list(feature_names)
        self.config = config
        self.party = party
        self._ctx: ts.Context | None = None
        self._stats: dict[str, FloatArray] = {}
        self._x: FloatArray | None = None
        self._weights: FloatArray | None = None
        self._w = np.zeros(len(feature_names) + 1)  # last entry: intercept
        self._n_total = 0
        self._round = 0
        self._rng_salt = int.from_bytes(hashlib.sha256(party.encode()).digest()[:4], "big")

    def _check_data(self, n_features: int) -> None:
        if self._x_raw.ndim != 2 or self._x_raw.shape[1] != n_features:
            raise DataError(f"expected a matrix with {n_features} feature columns")
        if self._y.shape != (self._x_raw.shape[0],) or not np.isin(self._y, (0.0, 1.0)).all():
            raise DataError("labels must be one 0/1 value per row")
        if not np.all(np.isfinite(self._x_raw)):
            raise DataError("feature matrix holds NaN or infinite values")
        if self._x_raw.shape[0] < settings.DEFAULT_MIN_ROWS_PER_STATISTIC:
            raise PolicyError("too few rows to take part in a secure sum")

    # --- keys ----------------------------------------------------------------------------------
    def create_keys(self) -> tuple[Message, bytes]:
        """Make the job's CKKS key: the sealed-to-peers message and the coordinator's context."""
        self._ctx = ckks.make_context()
        secret = Message(SECRET_CONTEXT, blobs={"context": ckks.secret_context_bytes(self._ctx)})
        return secret, ckks.public_context_bytes(self._ctx)

    def accept_keys(self, msg: Message) -> None:
        """Take the secret context a peer made (arrives unsealed from the framework)."""
        self._ctx = ckks.load_context(
            msg.expect(SECRET_CONTEXT).blob("context"), require_secret=True
        )

    def _context(self) -> ts.Context:
        if self._ctx is None:
            raise ProtocolError("horizontal LR step before the CKKS key was shared")
        return self._ctx

    # --- federated standardisation ---------------------------------------------------------
    def stats_message(self, index: int) -> Message:
        """This silo's encrypted contribution to statistic round ``index`` (0..3)."""
        return _update_message("stats", index, self._stat_values(index), self._context())

    def _stat_values(self, index: int) -> FloatArray:
        x, n = self._x_raw, self._n_total
        if index == 0:
            return np.array([x.shape[0], float(self._y.sum())])
        needs = {1: "count", 2: "mean", 3: "mad"}
        if index not in needs or needs[index] not in self._stats:
            raise ProtocolError(f"statistic round {index} is unknown or out of order")
        if index == 1:
            return x.sum(axis=0) / n
        dev = (x - self._stats["mean"]) / (1.0 if index == 2 else self._stats["mad"])
        if index == 2:
            return np.abs(dev).sum(axis=0) / n
        return np.asarray((dev**2).sum(axis=0) / n)

    def accept_stats(self, msg: Message) -> None:
        """Decrypt the pooled statistic of round ``index``; after round 3, standardise."""
        index, values = self._open_sum(msg, "stats")
        if index == 0:
            self._n_total, self._stats["positives"] = int(round(values[0])), values[1:2]
            if self._n_total < settings.DEFAULT_MIN_ROWS_PER_STATISTIC * self.n_silos:
                raise PolicyError("pooled row count is below the release minimum")
            self._stats["count"] = values[:1]
        elif index == 1:
            self._stats["mean"] = values
        elif index == 2:
            self._stats["mad"] = np.where(values > settings.LR_MIN_FEATURE_STD, values, 1.0)
        else:
            var = values * self._stats["mad"] ** 2
            self.standardizer = Standardizer.from_moments(self._stats["mean"], var)
            self._start_training()

    def _open_sum(self, msg: Message, phase: str) -> tuple[int, FloatArray]:
        got_phase, index, length = _round_id(msg.expect(SUM))
        if got_phase != phase:
            raise ProtocolError(f"expected a '{phase}' sum, got '{got_phase}'")
        if msg.meta.get("silos") != self.n_silos:
            raise ProtocolError(
                f"sum is over {msg.meta.get('silos')!r} silos, the job has {self.n_silos}"
            )
        decrypted = ckks.decrypt_vector(self._context(), _ciphertexts(msg), length)
        return index, ckks.decode_fixed(decrypted)

    def _start_training(self) -> None:
        self._x = np.hstack(
            [self.standardizer.transform(self._x_raw), np.ones((self._x_raw.shape[0], 1))]
        )
        cw = self.config.class_weight
        if cw == "balanced":
            n, pos = float(self._n_total), float(self._stats["positives"][0])
            if pos <= 0 or pos >= n:
                raise DataError("balanced class weights need both classes in the pooled rows")
            cw = (n / (2.0 * (n - pos)), n / (2.0 * pos))
        self._weights = sample_weights(self._y, cw)

    # --- FedAvg rounds -------------------------------------------------------------------------
    def update_message(self) -> Message:
        """Train locally from the global weights, send ``(n_k / N) * w_k`` encrypted."""
        if self._x is None or self._weights is None:
            raise ProtocolError("training round before the statistics rounds finished")
        local = self._local_sgd(self._w.copy())
        share = local * (self._x.shape[0] / self._n_total)
        return _update_message("round", self._round, share, self._context())

    def _local_sgd(self, w: FloatArray) -> FloatArray:
        assert self._x is not None and self._weights is not None
        lr = learning_rate(self.config, self._round)
        l2_mask = np.r_[np.ones(w.size - 1), 0.0]
        for local_epoch in range(self.config.local_epochs):
            epoch = self._round * self.config.local_epochs + local_epoch
            for rows in epoch_batches(
                self._x.shape[0], self.config.batch_size, epoch, self.config.seed, self._rng_salt
            ):
                xb = self._x[rows]
                resid = self._weights[rows] * (sigmoid(xb @ w) - self._y[rows])
                grad = xb.T @ resid / rows.size + self.config.l2 * l2_mask * w
                w -= lr * grad
        return w

    def accept_update(self, msg: Message) -> RoundResult:
        """Decrypt the averaged model; report progress (identical at every silo)."""
        index, new_w = self._open_sum(msg, "round")
        if index != self._round or new_w.size != self._w.size:
            raise ProtocolError(f"sum is for round {index}, this silo is at round {self._round}")
        change = float(np.max(np.abs(new_w - self._w)))
        self._w = new_w
        self._round += 1
        assert self._x is not None and self._weights is not None
        loss = log_loss(self._x @ new_w, self._y, self._weights)
        converged = change <= self.config.tol or self._round >= self.config.max_iter
        return RoundResult(round=index, max_change=change, converged=converged, train_loss=loss)

    def model(self) -> HorizontalLRModel:
        """The current global model, mapped back to raw feature units."""
        coef_std, b_std = self._w[:-1].copy(), float(self._w[-1])
        raw, offset = self.standardizer.raw_coefficients(coef_std)
        info = {
            "rounds": self._round,
            "l2": self.config.l2,
            "rows": self._n_total,
            "sklearn_C": 1.0 / (self.config.l2 * self._n_total) if self.config.l2 else 1e12,
        }
        return HorizontalLRModel(
            feature_names=self.feature_names,
            coef=raw,
            intercept=b_std + offset,
            standardizer=self.standardizer,
            coef_standardised=coef_std,
            intercept_standardised=b_std,
            info=info,
        )
