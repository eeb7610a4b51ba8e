"""Every job step kind's parameters, declared once: name, type, default, bounds, unit, help.

This module holds the machinery (:class:`Param`, :class:`StepSchema`, :func:`check_step`) and the
parameters several kinds share; each kind declares its own :class:`StepSchema` as ``SCHEMA`` in
``fedsilo/protocols/<kind>/schema.py``, and :data:`SCHEMAS` gathers them for every record of the
protocol registry. One truth for three readers: the coordinator validates a whole job with it before
it contacts any silo (``fedsilo job check``, :func:`fedsilo.coordinator.orchestrator.run_job`),
every silo validates the spec it is offered at OpenJob with the same code, and the parameter
dataclasses (:class:`~fedsilo.ml.boost_params.BoostParams`, :class:`~fedsilo.ml.lr_common.LRConfig`)
take their defaults and bounds from here. ``docs/jobs.md`` is generated from it
(``scripts/jobs_doc.py``). Plain data and checks: no numpy, no grpc.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from fedsilo import settings
from fedsilo.errors import ConfigError
from fedsilo.protocols import modules

__all__ = [
    "ALIGNMENT",
    "BOOST_PARAMS",
    "CHUNK_ROWS",
    "EVALUATE_ON",
    "HLR_PARAMS",
    "INSECURE_MIN_KEY_BITS",
    "KEY_BITS",
    "LR_PARAMS",
    "MODEL",
    "NAME",
    "SCHEMAS",
    "Param",
    "Rule",
    "StepSchema",
    "check_step",
    "check_steps",
    "check_values",
    "defaults",
    "did_you_mean",
    "fraction",
    "get_schema",
    "step_label",
]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _is_weights(v: Any) -> bool:
    return isinstance(v, list | tuple) and len(v) == 2 and all(_is_number(w) and w > 0 for w in v)


def _is_strings(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) and x for x in v)


def _is_numbers(v: Any) -> bool:
    return isinstance(v, list) and all(_is_number(x) for x in v)


def _is_party_dataset(v: Any) -> bool:
    return (
        isinstance(v, Mapping)
        and set(v) == {"party", "dataset"}
        and all(isinstance(v[k], str) and v[k] for k in ("party", "dataset"))
    )


def _is_code_table(v: Any) -> bool:
    """A reason-code table: ``{feature label = "code"}``, non-empty strings, of bounded size."""
    return (
        isinstance(v, Mapping)
        and 0 < len(v) <= _CODE_TABLE_MAX_ENTRIES
        and all(
            isinstance(k, str) and isinstance(c, str) and 0 < len(k) <= 200 and 0 < len(c) <= 64
            for k, c in v.items()
        )
    )


#: most entries a reason-code table in a job spec may hold
_CODE_TABLE_MAX_ENTRIES = 10_000

#: type name -> (how the docs and errors say it, the test a value must pass)
_TYPES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "int": ("an integer", _is_int),
    "float": ("a finite number", _is_number),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "str": ("a non-empty string", lambda v: isinstance(v, str) and bool(v)),
    "reveal": (
        '"all", "leader" or a list of party names',
        lambda v: (
            v in ("all", "leader")
            or (isinstance(v, list) and all(isinstance(p, str) and p for p in v))
        ),
    ),
    "class_weight": (
        '"balanced" or two positive numbers [w0, w1]',
        lambda v: v == "balanced" or _is_weights(v),
    ),
    "party_dataset": ("{ party = ..., dataset = ... }", _is_party_dataset),
    "fractions": (
        "a non-empty list of distinct numbers strictly between 0 and 1",
        lambda v: (
            isinstance(v, list)
            and bool(v)
            and all(_is_number(f) and 0 < f < 1 for f in v)
            and len(set(v)) == len(v)
        ),
    ),
    "code_table": ('a table of feature = "code" strings', _is_code_table),
    "strings": ("a list of non-empty strings", lambda v: _is_strings(v)),
    "numbers": ("a list of finite numbers", lambda v: _is_numbers(v)),
    "string_lists": (
        "a list of lists of non-empty strings",
        lambda v: isinstance(v, list) and all(_is_strings(x) for x in v),
    ),
    "bands": (
        "a table of column = [increasing numbers]",
        lambda v: (
            isinstance(v, Mapping)
            and all(
                isinstance(k, str) and _is_numbers(e) and bool(e) and list(e) == sorted(set(e))
                for k, e in v.items()
            )
        ),
    ),
    "columns": ("a list of column names", lambda v: _is_strings(v)),
}


@dataclass(frozen=True)
class Param:
    """One key of a step table. ``default`` None: optional, no value (TOML has no null).

    Bounds are inclusive unless ``open_low`` / ``open_high``; ``choices`` lists the strings a
    ``str`` parameter may take.
    """

    name: str
    type: str
    default: Any
    help: str
    unit: str = ""
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    choices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.type not in _TYPES:
            raise ValueError(f"parameter {self.name!r}: unknown type {self.type!r}")

    def bounds(self) -> str:
        """The allowed range as text (``[1, 16]``, ``(0, 1]``, ``>= 0``), or ``""``."""
        if self.choices:
            return "one of " + ", ".join(f'"{c}"' for c in self.choices)
        if self.low is not None and self.high is not None:
            return (
                f"{'(' if self.open_low else '['}{_num(self.low)}, {_num(self.high)}"
                f"{')' if self.open_high else ']'}"
            )
        if self.low is not None:
            return f"{'>' if self.open_low else '>='} {_num(self.low)}"
        if self.high is not None:
            return f"{'<' if self.open_high else '<='} {_num(self.high)}"
        return ""

    def type_text(self) -> str:
        return _TYPES[self.type][0]

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not allowed here, or None when it is."""
        if value is None and self.default is None:
            return None
        ok = _TYPES[self.type][1](value) and self._in_range(value)
        if ok:
            return None
        return f"'{self.name}' must be {self.allowed()}, got {_shown(value)}"

    def allowed(self) -> str:
        """What a value must be, as text: ``an integer in [1, 16]``, ``one of "a", "b"``."""
        bounds = self.bounds()
        if self.choices:
            return bounds
        if bounds.startswith(("[", "(")):
            return f"{self.type_text()} in {bounds}"
        return f"{self.type_text()} {bounds}".strip()

    def _in_range(self, value: Any) -> bool:
        if self.choices and isinstance(value, str):
            return value in self.choices
        if not _is_number(value):
            return True
        low_ok = self.low is None or (value > self.low if self.open_low else value >= self.low)
        high_ok = self.high is None or (value < self.high if self.open_high else value <= self.high)
        return low_ok and high_ok


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def _shown(value: Any) -> str:
    text = repr(value) if not isinstance(value, bool) else str(value).lower()
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(frozen=True)
class Rule:
    """A check across keys of one step: ``ok(values)`` must hold, else ``message`` (about
    ``key``)."""

    key: str
    ok: Callable[[Mapping[str, Any]], bool]
    message: str


@dataclass(frozen=True)
class StepSchema:
    """The keys one step kind takes (besides ``kind``), with a line saying what it does."""

    kind: str
    help: str
    params: tuple[Param, ...]
    rules: tuple[Rule, ...] = ()

    def names(self) -> list[str]:
        return [p.name for p in self.params]


def defaults(params: Sequence[Param]) -> dict[str, Any]:
    """``{name: default}``: what the parameter dataclasses use as field defaults."""
    return {p.name: p.default for p in params}


def check_values(params: Sequence[Param], values: Mapping[str, Any], where: str) -> None:
    """Refuse the first value of ``values`` outside its parameter's type or bounds."""
    table = {p.name: p for p in params}
    for name, value in values.items():
        param = table.get(name)
        problem = param.problem(value) if param is not None else None
        if problem:
            raise ConfigError(f"{where}: {problem}")


#: keys renamed since earlier releases: an old job file is told the new name
RENAMED = {"max_epochs": "max_iter"}


def did_you_mean(word: str, known: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest known name, or ``""``."""
    if RENAMED.get(word) in known:
        return f" (renamed '{RENAMED[word]}')"
    close = difflib.get_close_matches(word, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def step_label(index: int | None, kind: str) -> str:
    """How errors name a step: ``step 3 (secureboost)`` (1-based, as in the job's results)."""
    return f"step {index + 1} ({kind})" if index is not None else f"step ({kind})"


def get_schema(kind: Any, index: int | None = None) -> StepSchema:
    """The schema of step kind ``kind``; an unknown kind is a ConfigError naming the known ones."""
    schema = SCHEMAS.get(kind) if isinstance(kind, str) else None
    if schema is None:
        where = f"step {index + 1}: " if index is not None else ""
        raise ConfigError(
            f"{where}unknown step kind {_shown(kind)}"
            f"{did_you_mean(str(kind), sorted(SCHEMAS))} "
            f"(known: {', '.join(sorted(SCHEMAS))})"
        )
    return schema


def check_step(entry: Mapping[str, Any], index: int | None = None) -> dict[str, Any]:
    """Every key of step table ``entry`` with its default filled in, once each is checked.

    Refuses an unknown kind, an unknown key (with the closest known one), a nested
    ``[steps.params]`` table, a wrong type, an out-of-range value and a broken cross-key rule,
    each as one line naming the step and the key.
    """
    kind = entry.get("kind")
    schema = get_schema(kind, index)
    where = step_label(index, schema.kind)
    keys = {k: v for k, v in entry.items() if k != "kind"}
    if "params" in keys and "params" not in schema.names():
        raise ConfigError(
            f"{where}: parameters go in the step table itself, not in a nested "
            "'params' table ([steps.params]): flatten it"
        )
    for key in sorted(keys):
        if key not in schema.names():
            raise ConfigError(
                f"{where}: unknown key {_shown(key)}{did_you_mean(str(key), schema.names())}"
            )
    check_values(schema.params, keys, where)
    values = {**defaults(schema.params), **keys}
    for rule in schema.rules:
        if not rule.ok(values):
            raise ConfigError(f"{where}: '{rule.key}' {rule.message}")
    return values


def check_steps(steps: Any) -> list[dict[str, Any]]:
    """:func:`check_step` over a job's step list (which must be a non-empty list of tables)."""
    if not isinstance(steps, list) or not steps:
        raise ConfigError("a job needs at least one [[steps]] entry")
    out = []
    for index, entry in enumerate(steps):
        if not isinstance(entry, Mapping):
            raise ConfigError(f"step {index + 1}: must be a table with a 'kind'")
        out.append(check_step(entry, index))
    return out


# --- parameters several kinds share (a kind's own: fedsilo/protocols/<kind>/schema.py) ------

ALIGNMENT = Param(
    "alignment",
    "str",
    None,
    "stored alignment this step works on; default: "
    "what an earlier step of the job made (see each kind)",
)
NAME = Param("name", "str", None, "registry name of the model (default: job name + kind)")
MODEL = Param(
    "model",
    "str",
    None,
    "registry id of a model, or the kind of a model trained "
    "earlier in this job; default: the last model this job trained",
)
CHUNK_ROWS = Param(
    "chunk_rows",
    "int",
    settings.WRITE_CHUNK_ROWS,
    "rows predicted per call and written per transaction",
    "rows",
    low=1,
)
EVALUATE_ON = Param(
    "evaluate_on",
    "party_dataset",
    None,
    "held-out dataset at one member: the whole model is scored there, alone",
)
KEY_BITS = Param(
    "key_bits",
    "int",
    settings.PAILLIER_KEY_BITS,
    "label holder's Paillier key; each silo refuses one below its min_paillier_bits at OpenJob",
    "bits",
    low=1,
    high=settings.PAILLIER_MAX_BITS,
)

INSECURE_MIN_KEY_BITS = Param(
    "insecure_min_key_bits",
    "int",
    None,
    "lowers the library's key-size floor (tests only; silo policy still applies)",
    "bits",
    low=1,
)

#: XGBoost's training parameters (names, defaults, bounds), shared by secureboost and hxgb
BOOST_PARAMS: tuple[Param, ...] = (
    Param(
        "n_estimators",
        "int",
        100,
        "boosting rounds (trees)",
        "trees",
        low=1,
        high=settings.SECUREBOOST_MAX_TREES,
    ),
    Param("max_depth", "int", 6, "deepest level of a tree", "levels", low=1, high=16),
    Param(
        "learning_rate",
        "float",
        0.3,
        "shrinkage of each tree's leaf values (XGBoost eta)",
        low=0,
        high=1,
        open_low=True,
    ),
    Param("reg_lambda", "float", 1.0, "L2 penalty on leaf values", low=0),
    Param("gamma", "float", 0.0, "smallest loss reduction a split must bring", low=0),
    Param("min_child_weight", "float", 1.0, "smallest hessian sum of a child", low=0),
    Param(
        "subsample", "float", 1.0, "share of rows each tree samples", low=0, high=1, open_low=True
    ),
    Param(
        "colsample_bytree",
        "float",
        1.0,
        "share of features each tree samples",
        low=0,
        high=1,
        open_low=True,
    ),
    Param(
        "max_bin",
        "int",
        256,
        "histogram bins per feature",
        "bins",
        low=2,
        high=settings.SECUREBOOST_MAX_BIN,
    ),
    Param(
        "base_score",
        "float",
        None,
        "starting probability; default: the label mean",
        low=0,
        high=1,
        open_low=True,
        open_high=True,
    ),
    Param("missing", "float", None, "a value meaning missing besides NaN"),
    Param(
        "early_stopping_rounds",
        "int",
        None,
        "stop when the validation log-loss has not "
        "improved for this many trees, keeping the best (needs validation rows)",
        "trees",
        low=1,
    ),
    Param("seed", "int", 0, "seed of row and column sampling"),
)

#: logistic regression (vertical); scikit-learn's names where one exists
LR_PARAMS: tuple[Param, ...] = (
    Param(
        "l2",
        "float",
        settings.LR_L2,
        "L2 penalty on coefficients (intercept not penalised); scikit-learn's C = 1 / (l2 * rows)",
        low=0,
    ),
    Param(
        "learning_rate",
        "float",
        settings.LR_LEARNING_RATE,
        "step size on standardised features",
        low=0,
        open_low=True,
    ),
    Param(
        "lr_schedule",
        "str",
        "step",
        "step: times lr_decay per epoch; inverse: divided by 1 + lr_decay * epoch",
        choices=("constant", "step", "inverse"),
    ),
    Param("lr_decay", "float", settings.LR_DECAY, "decay of the learning rate", low=0),
    Param(
        "batch_size",
        "int",
        settings.LR_BATCH_ROWS,
        "rows per mini-batch; smaller batches "
        "would let a party solve for the residuals from its gradients",
        "rows",
        low=settings.LR_MIN_BATCH_ROWS,
    ),
    Param(
        "max_iter",
        "int",
        settings.LR_MAX_EPOCHS,
        "most passes over the training rows (scikit-learn SGDClassifier's max_iter)",
        "epochs",
        low=1,
        high=settings.LR_MAX_EPOCHS_LIMIT,
    ),
    Param(
        "tol",
        "float",
        settings.LR_TOL,
        "stop when an epoch lowers the training loss by less than this fraction",
        low=0,
    ),
    Param(
        "class_weight",
        "class_weight",
        None,
        "per-class row weights (scikit-learn's); default: all 1",
    ),
    Param("seed", "int", 0, "seed of the mini-batch order"),
)

#: logistic regression (horizontal, FedAvg): LR's parameters with other defaults, plus rounds
HLR_PARAMS: tuple[Param, ...] = tuple(
    {
        "learning_rate": replace(
            p, default=settings.HLR_LEARNING_RATE, help="local SGD step size, decayed per round"
        ),
        "lr_decay": replace(p, default=settings.HLR_DECAY),
        "batch_size": replace(
            p, default=settings.HLR_LOCAL_BATCH_ROWS, help="rows per local mini-batch"
        ),
        "max_iter": replace(
            p, default=settings.HLR_MAX_ROUNDS, unit="rounds", help="most aggregation rounds"
        ),
        "tol": replace(
            p,
            default=settings.HLR_TOL,
            help="stop when no coefficient moves more than this in a round",
        ),
    }.get(p.name, p)
    for p in LR_PARAMS
) + (
    Param("local_epochs", "int", 1, "passes over local rows per round", "epochs", low=1, high=100),
)


def fraction(
    name: str, default: float, help: str, high: float = 1.0, *, open_high: bool = True
) -> Param:
    """A share of rows: a float in ``[0, high)`` (``[0, high]`` when not ``open_high``)."""
    return Param(name, "float", default, help, low=0, high=high, open_high=open_high)


class _Schemas(Mapping[str, StepSchema]):
    """Every kind's :class:`StepSchema`, in registry order: ``SCHEMA`` of
    ``fedsilo.protocols.<kind>.schema`` for every record of :mod:`fedsilo.protocols`.

    Loaded on first use, so that a ``schema.py`` (which imports this module's machinery) and this
    module can be imported in either order.
    """

    def __init__(self) -> None:
        self._loaded: dict[str, StepSchema] | None = None

    def _all(self) -> dict[str, StepSchema]:
        if self._loaded is None:
            loaded = {kind: module.SCHEMA for kind, module in modules("schema").items()}
            for kind, schema in loaded.items():
                if not isinstance(schema, StepSchema) or schema.kind != kind:
                    raise TypeError(f"fedsilo.protocols.{kind}.schema.SCHEMA is not {kind}'s")
            self._loaded = loaded
        return self._loaded

    def __getitem__(self, kind: str) -> StepSchema:
        return self._all()[kind]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


#: step kind -> its schema, for every registered protocol
SCHEMAS: Mapping[str, StepSchema] = _Schemas()
