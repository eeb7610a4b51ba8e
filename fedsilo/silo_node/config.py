"""A silo's TOML config, read once at start into frozen dataclasses.

Why so strict: the config carries the silo's local *policy*. A misspelt key (``min_intersecton``)
that was silently ignored would leave the default in force, i.e. quietly weaken what the operator
meant to enforce. So every unknown key is an error, every error is one line naming the file and the
key, and a policy value may only be *tighter* than the defaults in :mod:`fedsilo.settings`.

Policy is deny-by-default: without ``[policy] protocols`` and ``roles`` the silo takes part in
nothing. Columns a job may use default to the dataset's declared features. ``peers`` (optional)
names the only parties the silo works with; without it, any silo certificate of its CA will do,
and the ``[tls] coordinator`` identity is never a party either way.

Relative paths (SQLite database file, TLS files) are resolved against the config file's folder,
so a config works the same whatever the current directory of the process.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from fedsilo import protocols as registry
from fedsilo import settings
from fedsilo.envsubst import expand_env
from fedsilo.errors import ConfigError, PolicyError

__all__ = [
    "KNOWN_PROTOCOLS",
    "KNOWN_ROLES",
    "DatasetConfig",
    "PolicyConfig",
    "SiloConfig",
    "TlsConfig",
    "ServingConfig",
    "load_silo_config",
]

#: protocol names a policy may allow (the ``kind`` of a job step), from the protocol registry.
KNOWN_PROTOCOLS: frozenset[str] = registry.KNOWN_PROTOCOLS
#: roles a silo may take in a job: label holder, feature holder, horizontal member.
KNOWN_ROLES: frozenset[str] = registry.ROLES

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")
_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_DATASET_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")
_TOP_KEYS = frozenset(
    {"party", "listen", "database", "tls", "datasets", "policy", "serving", "output_dir"}
)
_TLS_KEYS = frozenset({"ca", "cert", "key", "coordinator", "insecure_plaintext"})
_DATASET_KEYS = frozenset({"table", "query", "id_column", "features", "label"})
_POLICY_KEYS = frozenset(
    {
        "protocols",
        "roles",
        "min_intersection",
        "min_paillier_bits",
        "min_rows_per_statistic",
        "release_feature_names",
        "allowed_columns",
        "psi_pad_to_multiple",
        "peers",
        "release_statistics",
        "release_stability",
        "release_partial_scores",
        "release_feature_contributions",
        "release_group_counts",
        "release_woe_counts",
        "release_woe_iv",
        "release_woe_table",
        "release_points_per_party",
        "serve_models",
        "serve_rate_limit",
        "serve_daily_budget",
    }
)
_SERVING_KEYS = frozenset(
    {"listen", "grpc_listen", "token_file", "ca", "cert", "key", "insecure_plaintext"}
)


@dataclass(frozen=True)
class TlsConfig:
    """mTLS files of the silo, or the loudly named plaintext mode (tests, demos on loopback)."""

    insecure_plaintext: bool = False
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    #: certificate identity (CN / SAN) of the only client this silo answers.
    coordinator: str | None = None


@dataclass(frozen=True)
class DatasetConfig:
    """Where a dataset lives: exactly one of ``table`` (maybe ``schema.table``) or ``query``."""

    name: str
    id_column: str
    features: tuple[str, ...]
    label: str | None = None
    table: str | None = None
    schema: str | None = None
    query: str | None = None

    @property
    def source(self) -> str:
        """How error messages name the source: ``table 'x'`` or ``query``."""
        if self.table is not None:
            return f"table '{self.table}'"
        return "query"


@dataclass(frozen=True)
class PolicyConfig:
    """The silo's local policy. Every check raises :class:`PolicyError` with the reason."""

    protocols: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset()
    min_intersection: int = settings.DEFAULT_MIN_INTERSECTION
    min_paillier_bits: int = settings.PAILLIER_MIN_SECURE_BITS
    min_rows_per_statistic: int = settings.DEFAULT_MIN_ROWS_PER_STATISTIC
    release_feature_names: bool = False
    #: ids: PSI pads this silo's set with random dummy ids up to the next multiple (1: no padding)
    psi_pad_to_multiple: int = 1
    #: dataset name -> columns a job may read (already defaulted to the declared features).
    allowed_columns: Mapping[str, frozenset[str]] = field(default_factory=dict)
    #: the only parties this silo works with; None: any silo certified by its consortium CA.
    peers: frozenset[str] | None = None
    #: the ``stats`` step may release column statistics and correlations (docs/leakage.md)
    release_statistics: bool = False
    #: the ``stability`` step may release population stability indexes and bin shares
    release_stability: bool = False
    #: explanations of vertical LR: send the label holder this silo's unmasked partial score per
    #: scored row (``explain = "party"``) / its per-feature terms (``explain = "feature"``)
    release_partial_scores: bool = False
    release_feature_contributions: bool = False
    #: dataset name -> protected attribute columns whose group counts a fairness audit may
    #: release (deny by default: no dataset, no column)
    release_group_counts: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def check_explain_release(self, level: str) -> None:
        """Refuse to release per-row explanation values the policy does not allow."""
        key = {"party": "release_partial_scores", "feature": "release_feature_contributions"}
        switch = key.get(level)
        if switch is None:
            raise PolicyError(f"unknown explanation level '{level[:20]}'")
        if not getattr(self, switch):
            raise PolicyError(
                f"policy does not allow releasing per-row explanation values "
                f'(explain = "{level}" needs [policy] {switch} = true)'
            )

    #: woe, passive: the label holder may learn per-bin event / row counts of its characteristics
    release_woe_counts: bool = False
    #: woe, label holder: each owner may learn the IV of its characteristics
    release_woe_iv: bool = False
    #: woe, label holder: each owner may learn the per-bin WOE (and merges) of its characteristics
    release_woe_table: bool = False
    #: score of a scorecard: the label holder may learn this silo's points per row
    release_points_per_party: bool = False
    #: registry ids of the models this silo takes part in scoring online (none by default)
    serve_models: frozenset[str] = frozenset()
    #: rows per second this silo answers online per served model
    serve_rate_limit: int = settings.SERVING_DEFAULT_RATE_LIMIT
    #: rows per UTC day this silo answers online per served model
    serve_daily_budget: int = settings.SERVING_DEFAULT_DAILY_BUDGET

    def check_peer(self, party: str) -> None:
        """Refuse a job naming a party outside ``peers`` (when the policy lists them)."""
        if self.peers is not None and party not in self.peers:
            raise PolicyError(f"policy does not allow peer '{party[:40]}' (not in [policy] peers)")

    def check_protocol(self, name: str, role: str | None = None) -> None:
        """Refuse a protocol (and role, when given) this silo did not opt into."""
        if name not in self.protocols:
            raise PolicyError(f"policy does not allow protocol '{name[:40]}'")
        if role is not None and role not in self.roles:
            raise PolicyError(f"policy does not allow role '{role[:40]}' (protocol '{name}')")

    def check_columns(self, dataset: str, columns: Sequence[str]) -> None:
        """Refuse columns outside the dataset's allowed list (unknown datasets included)."""
        allowed = self.allowed_columns.get(dataset)
        if allowed is None:
            raise PolicyError(f"policy does not allow dataset '{dataset[:60]}'")
        denied = [c for c in columns if c not in allowed]
        if denied:
            raise PolicyError(
                f"policy does not allow column(s) {', '.join(repr(c[:60]) for c in denied[:5])} "
                f"of dataset '{dataset}'"
            )

    def check_group_counts(self, dataset: str, columns: Sequence[str]) -> None:
        """Refuse a fairness audit over columns whose group counts this silo does not release."""
        allowed = self.release_group_counts.get(dataset, frozenset())
        denied = [c for c in columns if c not in allowed]
        if denied:
            raise PolicyError(
                f"policy does not release group counts of column(s) "
                f"{', '.join(repr(c[:60]) for c in denied[:5])} of dataset '{dataset[:60]}' "
                "([policy] release_group_counts)"
            )

    def check_paillier_bits(self, bits: int) -> None:
        if bits > settings.PAILLIER_MAX_BITS:
            raise PolicyError(
                f"job asks for a Paillier key of {bits} bits, above the ceiling of "
                f"{settings.PAILLIER_MAX_BITS} bits"
            )
        if bits < self.min_paillier_bits:
            raise PolicyError(
                f"policy requires Paillier keys of at least {self.min_paillier_bits} bits, "
                f"job uses {bits}"
            )

    def check_intersection(self, n: int) -> None:
        if n < self.min_intersection:
            raise PolicyError(
                f"intersection of {n} rows is below this silo's minimum of {self.min_intersection}"
            )

    def check_rows_per_statistic(self, n: int) -> None:
        if n < self.min_rows_per_statistic:
            raise PolicyError(
                f"a statistic over {n} rows is below this silo's minimum of "
                f"{self.min_rows_per_statistic}"
            )


@dataclass(frozen=True)
class ServingConfig:
    """The label holder's online scoring endpoints for its own applications (docs/serving.md):
    HTTP/JSON on ``listen``, gRPC on ``grpc_listen``; callers prove themselves with a client
    certificate of ``ca`` (TLS with ``cert``/``key``), or a bearer token read from
    ``token_file``, or (``insecure_plaintext``, loopback demos) not at all."""

    listen: str
    grpc_listen: str | None = None
    token: str | None = field(default=None, repr=False)
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    insecure_plaintext: bool = False


@dataclass(frozen=True)
class SiloConfig:
    party: str
    listen: str
    database_url: str
    datasets: dict[str, DatasetConfig]
    policy: PolicyConfig
    tls: TlsConfig
    path: Path
    serving: ServingConfig | None = None
    #: folder for the files this silo writes (``output_dir``; default: the config's folder)
    output_dir: Path | None = None

    @property
    def reports(self) -> Path:
        """The folder evaluation reports land in: ``reports/`` in the output folder."""
        return (self.output_dir or self.path.parent) / "reports"

    @property
    def models(self) -> Path:
        """The folder exported whole models land in: ``models/`` in the output folder."""
        return (self.output_dir or self.path.parent) / "models"

    @property
    def file_label(self) -> str:
        """Short name of the config file, used as the prefix of every error about it."""
        return self.path.name


def load_silo_config(path: str | Path) -> SiloConfig:
    """Read and check ``path``; raise :class:`ConfigError` (one line: file and key) if wrong."""
    path = Path(path).resolve()
    label = path.name
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{label}: file not found ({path})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{label}: cannot read ({err})") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{label}: not valid TOML ({err})") from None
    return _Parser(label, path.parent).silo(expand_env(raw, label), path)


class _Parser:
    """Turns the raw TOML dict into dataclasses; every ``fail`` names the file and key."""

    def __init__(self, label: str, base: Path) -> None:
        self.label = label
        self.base = base

    def fail(self, where: str, what: str) -> ConfigError:
        return ConfigError(f"{self.label}: {where} {what}")

    # --- primitives -----------------------------------------------------------------------------
    def keys(self, where: str, table: Any, allowed: frozenset[str]) -> dict[str, Any]:
        if not isinstance(table, dict):
            raise self.fail(where, "must be a table")
        unknown = sorted(set(table) - allowed)
        if unknown:
            raise self.fail(
                where, f"has unknown key '{unknown[0]}' (allowed: {', '.join(sorted(allowed))})"
            )
        return table

    def string(
        self, where: str, key: str, value: Any, pattern: re.Pattern[str] | None = None
    ) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(where, f"'{key}' must be a non-empty string")
        if pattern is not None and not pattern.match(value):
            raise self.fail(where, f"'{key}' = {value!r} is not a valid name ({pattern.pattern})")
        return value

    def strings(self, where: str, key: str, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(where, f"'{key}' must be a list of non-empty strings")
        if len(set(value)) != len(value):
            dup = next(v for v in value if value.count(v) > 1)
            raise self.fail(where, f"'{key}' lists '{dup}' twice")
        return tuple(value)

    def integer(self, where: str, key: str, value: Any, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(where, f"'{key}' must be an integer")
        if value < minimum:
            raise self.fail(
                where,
                f"'{key}' = {value} is below the default {minimum}; "
                "a silo config may only tighten policy",
            )
        return value

    def boolean(self, where: str, key: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.fail(where, f"'{key}' must be true or false")
        return value

    def switch(self, where: str, table: dict[str, Any], key: str) -> bool:
        """A release switch: off unless the table sets it."""
        return self.boolean(where, key, table.get(key, False))

    def file(self, where: str, key: str, value: Any) -> Path:
        p = self.base / self.string(where, key, value)
        if not p.is_file():
            raise self.fail(where, f"'{key}' file not found: {p}")
        return p

    # --- sections -------------------------------------------------------------------------------
    def silo(self, raw: dict[str, Any], path: Path) -> SiloConfig:
        self.keys("top level", raw, _TOP_KEYS)
        for key in ("party", "listen", "database", "tls"):
            if key not in raw:
                raise self.fail("top level", f"needs '{key}'")
        datasets = self.datasets(raw.get("datasets", {}))
        config = SiloConfig(
            party=self.string("top level", "party", raw["party"], _NAME_RE),
            listen=self.listen(raw["listen"]),
            database_url=self.database(raw["database"]),
            datasets=datasets,
            policy=self.policy(raw.get("policy", {}), datasets),
            tls=self.tls(raw["tls"]),
            path=path,
            serving=self.serving(raw["serving"]) if "serving" in raw else None,
            output_dir=(
                self.base / self.string("top level", "output_dir", raw["output_dir"])
                if "output_dir" in raw
                else None
            ),
        )
        self.coordinator_apart(config)
        return config

    def coordinator_apart(self, config: SiloConfig) -> None:
        """The coordinator is never a party: not this silo's own name, not a listed peer."""
        coordinator = config.tls.coordinator
        if coordinator is not None and coordinator == config.party:
            raise self.fail("[tls]", f"'coordinator' = {coordinator!r} is this silo's own party")
        if coordinator is not None and coordinator in (config.policy.peers or ()):
            raise self.fail("[policy]", f"'peers' lists the coordinator {coordinator!r}")

    def listen(self, value: Any, where: str = "top level") -> str:
        text = self.string(where, "listen", value)
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise self.fail(where, f"'listen' = {text!r} must be HOST:PORT")
        return text

    def database(self, value: Any) -> str:
        """Parse the SQLAlchemy URL; a relative SQLite file is made relative to the config."""
        text = self.string("top level", "database", value)
        try:
            url = make_url(text)
        except ArgumentError as err:
            raise self.fail("top level", f"'database' is not a SQLAlchemy URL ({err})") from None
        db = url.database
        if (
            url.get_backend_name() == "sqlite"
            and db
            and db != ":memory:"
            and not db.startswith("file:")
            and not Path(db).is_absolute()
        ):
            url = url.set(database=str(self.base / db))
        return url.render_as_string(hide_password=False)

    def tls(self, value: Any) -> TlsConfig:
        where = "[tls]"
        table = self.keys(where, value, _TLS_KEYS)
        insecure = self.boolean(where, "insecure_plaintext", table.get("insecure_plaintext", False))
        coordinator = table.get("coordinator")
        if coordinator is not None:
            coordinator = self.string(where, "coordinator", coordinator)
        if insecure:
            extra = sorted({"ca", "cert", "key"} & set(table))
            if extra:
                raise self.fail(where, f"'{extra[0]}' conflicts with insecure_plaintext = true")
            return TlsConfig(insecure_plaintext=True, coordinator=coordinator)
        for key in ("ca", "cert", "key", "coordinator"):
            if key not in table:
                raise self.fail(where, f"needs '{key}' (or insecure_plaintext = true)")
        return TlsConfig(
            ca=self.file(where, "ca", table["ca"]),
            cert=self.file(where, "cert", table["cert"]),
            key=self.file(where, "key", table["key"]),
            coordinator=coordinator,
        )

    def datasets(self, value: Any) -> dict[str, DatasetConfig]:
        if not isinstance(value, dict):
            raise self.fail("[datasets]", "must be a table of [datasets.NAME] tables")
        out = {}
        for name, table in value.items():
            if not _DATASET_RE.match(name):
                raise self.fail(
                    f"[datasets.{name}]", f"is not a valid name ({_DATASET_RE.pattern})"
                )
            out[name] = self.dataset(name, table)
        return out

    def dataset(self, name: str, value: Any) -> DatasetConfig:
        where = f"[datasets.{name}]"
        table = self.keys(where, value, _DATASET_KEYS)
        if ("table" in table) == ("query" in table):
            raise self.fail(where, "needs exactly one of 'table' or 'query'")
        for key in ("id_column", "features"):
            if key not in table:
                raise self.fail(where, f"needs '{key}'")
        id_column = self.string(where, "id_column", table["id_column"])
        features = self.strings(where, "features", table["features"])
        if not features:
            raise self.fail(where, "'features' must list at least one column")
        label = self.string(where, "label", table["label"]) if "label" in table else None
        for col in (id_column, label):
            if col is not None and col in features:
                raise self.fail(where, f"'{col}' cannot be both a feature and the id or label")
        if label is not None and label == id_column:
            raise self.fail(where, "'label' and 'id_column' must differ")
        schema, tname, query = None, None, None
        if "table" in table:
            schema, tname = self.table_name(where, table["table"])
        else:
            query = self.string(where, "query", table["query"]).strip().rstrip(";").strip()
        return DatasetConfig(
            name=name,
            id_column=id_column,
            features=features,
            label=label,
            table=tname,
            schema=schema,
            query=query,
        )

    def table_name(self, where: str, value: Any) -> tuple[str | None, str]:
        """``table`` or ``schema.table``; both parts plain identifiers (quoted in SQL anyway)."""
        text = self.string(where, "table", value)
        parts = text.split(".")
        if len(parts) > 2 or not all(_IDENT_RE.match(p) for p in parts):
            raise self.fail(
                where, f"'table' = {text!r} must be NAME or SCHEMA.NAME ({_IDENT_RE.pattern})"
            )
        if parts[-1].lower().startswith("fedsilo_"):
            raise self.fail(where, f"'table' = {text!r} uses the reserved prefix 'fedsilo_'")
        return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])

    def policy(self, value: Any, datasets: dict[str, DatasetConfig]) -> PolicyConfig:
        where = "[policy]"
        t = self.keys(where, value, _POLICY_KEYS)
        protocols = self.strings(where, "protocols", t.get("protocols", []))
        self.known(where, "protocols", protocols, KNOWN_PROTOCOLS)
        roles = self.strings(where, "roles", t.get("roles", []))
        self.known(where, "roles", roles, KNOWN_ROLES)
        return PolicyConfig(
            protocols=frozenset(protocols),
            roles=frozenset(roles),
            min_intersection=self.integer(
                where,
                "min_intersection",
                t.get("min_intersection", settings.DEFAULT_MIN_INTERSECTION),
                settings.DEFAULT_MIN_INTERSECTION,
            ),
            min_paillier_bits=self.integer(
                where,
                "min_paillier_bits",
                t.get("min_paillier_bits", settings.PAILLIER_MIN_SECURE_BITS),
                settings.PAILLIER_MIN_SECURE_BITS,
            ),
            min_rows_per_statistic=self.integer(
                where,
                "min_rows_per_statistic",
                t.get("min_rows_per_statistic", settings.DEFAULT_MIN_ROWS_PER_STATISTIC),
                settings.DEFAULT_MIN_ROWS_PER_STATISTIC,
            ),
            release_feature_names=self.boolean(
                where, "release_feature_names", t.get("release_feature_names", False)
            ),
            allowed_columns=self.allowed_columns(t.get("allowed_columns", {}), datasets),
            psi_pad_to_multiple=self.pad_multiple(where, t.get("psi_pad_to_multiple", 1)),
            peers=self.peers(where, t["peers"]) if "peers" in t else None,
            release_statistics=self.boolean(
                where, "release_statistics", t.get("release_statistics", False)
            ),
            release_stability=self.boolean(
                where, "release_stability", t.get("release_stability", False)
            ),
            release_partial_scores=self.boolean(
                where, "release_partial_scores", t.get("release_partial_scores", False)
            ),
            release_feature_contributions=self.boolean(
                where,
                "release_feature_contributions",
                t.get("release_feature_contributions", False),
            ),
            release_group_counts=self.group_counts(t.get("release_group_counts", {}), datasets),
            release_woe_counts=self.switch(where, t, "release_woe_counts"),
            release_woe_iv=self.switch(where, t, "release_woe_iv"),
            release_woe_table=self.switch(where, t, "release_woe_table"),
            release_points_per_party=self.switch(where, t, "release_points_per_party"),
            serve_models=frozenset(self.strings(where, "serve_models", t.get("serve_models", []))),
            serve_rate_limit=self.positive(
                where,
                "serve_rate_limit",
                t.get("serve_rate_limit", settings.SERVING_DEFAULT_RATE_LIMIT),
            ),
            serve_daily_budget=self.positive(
                where,
                "serve_daily_budget",
                t.get("serve_daily_budget", settings.SERVING_DEFAULT_DAILY_BUDGET),
            ),
        )

    def positive(self, where: str, key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self.fail(where, f"'{key}' must be a positive integer")
        return value

    def serving(self, value: Any) -> ServingConfig:
        """``[serving]``: the label holder's endpoints and how its applications authenticate."""
        where = "[serving]"
        t = self.keys(where, value, _SERVING_KEYS)
        if "listen" not in t:
            raise self.fail(where, "needs 'listen' (HOST:PORT of the HTTP endpoint)")
        listen = self.listen(t["listen"], where)
        grpc_listen = self.listen(t["grpc_listen"], where) if "grpc_listen" in t else None
        insecure = self.boolean(where, "insecure_plaintext", t.get("insecure_plaintext", False))
        tls_keys = sorted({"ca", "cert", "key"} & set(t))
        if insecure and (tls_keys or "token_file" in t):
            conflict = (tls_keys or ["token_file"])[0]
            raise self.fail(where, f"'{conflict}' conflicts with insecure_plaintext = true")
        if tls_keys and len(tls_keys) != 3:
            raise self.fail(where, "needs all of 'ca', 'cert' and 'key' for TLS")
        if not insecure and not tls_keys and "token_file" not in t:
            raise self.fail(
                where, "needs 'ca', 'cert' and 'key' or 'token_file' (or insecure_plaintext = true)"
            )
        token = None
        if "token_file" in t:
            token = self.file(where, "token_file", t["token_file"]).read_text().strip()
            if len(token) < 16:
                raise self.fail(where, "'token_file' must hold a token of at least 16 characters")
        files = {k: self.file(where, k, t[k]) for k in tls_keys}
        return ServingConfig(
            listen=listen,
            grpc_listen=grpc_listen,
            token=token,
            insecure_plaintext=insecure,
            **files,
        )

    def group_counts(
        self, value: Any, datasets: dict[str, DatasetConfig]
    ) -> dict[str, frozenset[str]]:
        """Per dataset: the declared features whose group counts a fairness audit may release."""
        return self.feature_lists("[policy] release_group_counts", value, datasets)

    def peers(self, where: str, value: Any) -> frozenset[str]:
        names = self.strings(where, "peers", value)
        if not names:
            raise self.fail(where, "'peers' lists no party (leave it out to allow any silo)")
        for name in names:
            if not _NAME_RE.match(name):
                raise self.fail(where, f"'peers' has {name!r}, not a valid party name")
        return frozenset(names)

    def pad_multiple(self, where: str, value: Any) -> int:
        pad = self.integer(where, "psi_pad_to_multiple", value, 1)
        if pad > settings.PSI_MAX_PAD_MULTIPLE:
            raise self.fail(
                where,
                f"'psi_pad_to_multiple' = {pad} is above the limit of "
                f"{settings.PSI_MAX_PAD_MULTIPLE} ids",
            )
        return pad

    def known(self, where: str, key: str, values: Sequence[str], known: frozenset[str]) -> None:
        for v in values:
            if v not in known:
                raise self.fail(
                    where, f"'{key}' has unknown value '{v}' (known: {', '.join(sorted(known))})"
                )

    def allowed_columns(
        self,
        value: Any,
        datasets: dict[str, DatasetConfig],
    ) -> dict[str, frozenset[str]]:
        """Per dataset: the listed columns (a subset of the features) or all features."""
        out = {name: frozenset(ds.features) for name, ds in datasets.items()}
        return out | self.feature_lists("[policy] allowed_columns", value, datasets)

    def feature_lists(
        self, where: str, value: Any, datasets: dict[str, DatasetConfig]
    ) -> dict[str, frozenset[str]]:
        """A table ``{dataset = [columns]}`` of declared datasets and their declared features."""
        if not isinstance(value, dict):
            raise self.fail(where, "must be a table {dataset = [columns]}")
        out = {}
        for name, cols in value.items():
            if name not in datasets:
                raise self.fail(where, f"names unknown dataset '{name}'")
            listed = self.strings(where, name, cols)
            extra = [c for c in listed if c not in datasets[name].features]
            if extra:
                raise self.fail(where, f"'{name}' lists '{extra[0]}', not a declared feature")
            out[name] = frozenset(listed)
        return out
