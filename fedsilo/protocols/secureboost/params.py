"""SecureBoost training parameters: XGBoost's (``BoostParams``) plus the Paillier knobs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from fedsilo.jobschema import Param, check_step, defaults
from fedsilo.ml.boost_params import BoostParams
from fedsilo.protocols.secureboost.schema import SCHEMA, SECUREBOOST_PARAMS

__all__ = ["STEP_KEYS", "SecureBoostParams", "secureboost_params"]

_D = defaults(SECUREBOOST_PARAMS)
#: keys of a ``secureboost`` job step that are not training parameters (derived from the schema)
STEP_KEYS = frozenset({"kind", *SCHEMA.names()}) - {p.name for p in SECUREBOOST_PARAMS}


@dataclass(frozen=True, kw_only=True)
class SecureBoostParams(BoostParams):
    """XGBoost's parameters plus the encryption ones (declared in
    :data:`fedsilo.protocols.secureboost.schema.SECUREBOOST_PARAMS`).

    ``early_stopping_rounds`` needs validation rows at the label holder.
    ``insecure_min_key_bits`` lowers the key-size floor (tests only).
    """

    LABEL: ClassVar[str] = "SecureBoost"
    PARAMS: ClassVar[tuple[Param, ...]] = SECUREBOOST_PARAMS

    key_bits: int = _D["key_bits"]
    insecure_min_key_bits: int | None = _D["insecure_min_key_bits"]
    precision_bits: int = _D["precision_bits"]
    binning: str = _D["binning"]


def secureboost_params(step: Mapping[str, Any], index: int | None = None) -> SecureBoostParams:
    """The training parameters of a ``secureboost`` job step (its flat keys, checked by the job
    schema; ``index`` names the step in errors)."""
    values = check_step(step, index)
    return SecureBoostParams(**{f.name: values[f.name] for f in fields(SecureBoostParams)})
