"""Silo TOML config: every mistake is a one-line ConfigError naming file and key; policy checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedsilo.errors import ConfigError, PolicyError
from fedsilo.silo_node.config import SiloConfig, load_silo_config

GOOD = """\
party = "bank"
listen = "127.0.0.1:50051"
database = "sqlite:///bank.db"

[tls]
ca = "certs/ca.pem"
cert = "certs/bank.pem"
key = "certs/bank.key"
coordinator = "coordinator"

[datasets.customers]
table = "customers"
id_column = "customer_id"
features = ["PAY_0", "PAY_2"]
label = "default"

[policy]
protocols = ["psi", "secureboost"]
roles = ["active"]
min_intersection = 500
min_paillier_bits = 3072
min_rows_per_statistic = 20
allowed_columns = {customers = ["PAY_0"]}
"""


def write(tmp_path: Path, text: str, name: str = "silo.toml") -> Path:
    certs = tmp_path / "certs"
    certs.mkdir(exist_ok=True)
    for f in ("ca.pem", "bank.pem", "bank.key"):
        (certs / f).write_text("x")
    path = tmp_path / name
    path.write_text(text)
    return path


def load(tmp_path: Path, text: str) -> SiloConfig:
    return load_silo_config(write(tmp_path, text))


def test_good_config_resolves_paths_and_policy(tmp_path: Path) -> None:
    cfg = load(tmp_path, GOOD)
    assert cfg.party == "bank" and cfg.listen == "127.0.0.1:50051"
    assert cfg.database_url == f"sqlite:///{tmp_path.resolve()}/bank.db"
    assert cfg.tls.ca == tmp_path.resolve() / "certs" / "ca.pem"
    assert cfg.tls.coordinator == "coordinator" and not cfg.tls.insecure_plaintext
    ds = cfg.datasets["customers"]
    assert (ds.table, ds.schema, ds.query) == ("customers", None, None)
    assert ds.features == ("PAY_0", "PAY_2") and ds.label == "default"
    assert cfg.policy.min_intersection == 500 and cfg.policy.min_paillier_bits == 3072
    assert cfg.policy.allowed_columns["customers"] == {"PAY_0"}
    assert cfg.policy.psi_pad_to_multiple == 1  # no padding unless asked
    assert cfg.path == tmp_path.resolve() / "silo.toml" and cfg.file_label == "silo.toml"


def test_minimal_config_is_deny_by_default(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """party = "p"\nlisten = "[::1]:7000"\ndatabase = "sqlite:////abs.db"
[tls]\ninsecure_plaintext = true
[datasets.d]\nquery = "SELECT * FROM t;"\nid_column = "id"\nfeatures = ["a", "b"]
""",
    )
    assert cfg.tls.insecure_plaintext and cfg.tls.ca is None
    assert cfg.database_url == "sqlite:////abs.db"
    assert cfg.datasets["d"].query == "SELECT * FROM t"
    with pytest.raises(PolicyError, match="protocol 'psi'"):
        cfg.policy.check_protocol("psi", "passive")
    # columns default to the declared features, nothing else
    cfg.policy.check_columns("d", ["a", "b"])
    with pytest.raises(PolicyError, match="'id'"):
        cfg.policy.check_columns("d", ["id"])
    # explanations: no per-row release unless the policy says so
    assert not cfg.policy.release_partial_scores
    assert not cfg.policy.release_feature_contributions
    for level, key in (
        ("party", "release_partial_scores"),
        ("feature", "release_feature_contributions"),
    ):
        with pytest.raises(PolicyError, match=key):
            cfg.policy.check_explain_release(level)


def test_schema_qualified_table_and_postgres_url(tmp_path: Path) -> None:
    text = GOOD.replace('table = "customers"', 'table = "sales.customers"').replace(
        "sqlite:///bank.db", "postgresql+psycopg://u:p%40ss@db:5432/x"
    )
    cfg = load(tmp_path, text)
    assert (cfg.datasets["customers"].schema, cfg.datasets["customers"].table) == (
        "sales",
        "customers",
    )
    assert cfg.database_url == "postgresql+psycopg://u:p%40ss@db:5432/x"


def test_policy_checks(tmp_path: Path) -> None:
    policy = load(tmp_path, GOOD).policy
    policy.check_protocol("psi", "active")
    policy.check_protocol("secureboost")
    with pytest.raises(PolicyError, match="role 'passive'"):
        policy.check_protocol("psi", "passive")
    with pytest.raises(PolicyError, match="protocol 'lr'"):
        policy.check_protocol("lr", "active")
    policy.check_columns("customers", ["PAY_0"])
    with pytest.raises(PolicyError, match="'PAY_2'"):
        policy.check_columns("customers", ["PAY_0", "PAY_2"])
    with pytest.raises(PolicyError, match="dataset 'other'"):
        policy.check_columns("other", ["PAY_0"])
    policy.check_paillier_bits(3072)
    with pytest.raises(PolicyError, match="3072"):
        policy.check_paillier_bits(2048)
    policy.check_paillier_bits(8192)
    with pytest.raises(PolicyError, match="key of 8193 bits, above the ceiling of 8192"):
        policy.check_paillier_bits(8193)  # settings.PAILLIER_MAX_BITS
    policy.check_intersection(500)
    with pytest.raises(PolicyError, match="499"):
        policy.check_intersection(499)
    with pytest.raises(PolicyError, match="19"):
        policy.check_rows_per_statistic(19)


def _swap(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new)


BAD = [
    ("toml", "party = ", "silo.toml: not valid TOML"),
    ("unknown-top", 'databse = "x"\n' + GOOD, "silo.toml: top level has unknown key 'databse'"),
    (
        "unknown-policy",
        _swap("min_intersection", "min_intersecton"),
        "silo.toml: [policy] has unknown key 'min_intersecton'",
    ),
    (
        "unknown-dataset-key",
        _swap('label = "default"', 'lable = "default"'),
        "silo.toml: [datasets.customers] has unknown key 'lable'",
    ),
    (
        "both-sources",
        _swap('table = "customers"', 'table = "customers"\nquery = "SELECT 1"'),
        "silo.toml: [datasets.customers] needs exactly one of 'table' or 'query'",
    ),
    (
        "no-source",
        _swap('table = "customers"\n', ""),
        "silo.toml: [datasets.customers] needs exactly one of 'table' or 'query'",
    ),
    (
        "no-id",
        _swap('id_column = "customer_id"\n', ""),
        "silo.toml: [datasets.customers] needs 'id_column'",
    ),
    (
        "features-type",
        _swap('features = ["PAY_0", "PAY_2"]', 'features = "PAY_0"'),
        "silo.toml: [datasets.customers] 'features' must be a list of non-empty strings",
    ),
    (
        "features-dup",
        _swap('["PAY_0", "PAY_2"]', '["PAY_0", "PAY_0"]'),
        "silo.toml: [datasets.customers] 'features' lists 'PAY_0' twice",
    ),
    (
        "label-is-feature",
        _swap('label = "default"', 'label = "PAY_2"'),
        "silo.toml: [datasets.customers] 'PAY_2' cannot be both a feature and the id or label",
    ),
    (
        "bad-table",
        _swap('table = "customers"', 'table = "cust; DROP"'),
        "silo.toml: [datasets.customers] 'table' = 'cust; DROP' must be NAME or SCHEMA.NAME",
    ),
    (
        "reserved-table",
        _swap('table = "customers"', 'table = "fedsilo_ledger"'),
        "silo.toml: [datasets.customers] 'table' = 'fedsilo_ledger' uses the reserved prefix",
    ),
    (
        "loosen-intersection",
        _swap("min_intersection = 500", "min_intersection = 5"),
        "silo.toml: [policy] 'min_intersection' = 5 is below the default 100; a silo config may "
        "only tighten policy",
    ),
    (
        "loosen-paillier",
        _swap("min_paillier_bits = 3072", "min_paillier_bits = 1024"),
        "silo.toml: [policy] 'min_paillier_bits' = 1024 is below the default 2048",
    ),
    (
        "loosen-stat",
        _swap("min_rows_per_statistic = 20", "min_rows_per_statistic = 1"),
        "silo.toml: [policy] 'min_rows_per_statistic' = 1 is below the default 10",
    ),
    (
        "pad-zero",
        _swap("[policy]\n", "[policy]\npsi_pad_to_multiple = 0\n"),
        "silo.toml: [policy] 'psi_pad_to_multiple' = 0 is below the default 1",
    ),
    (
        "pad-huge",
        _swap("[policy]\n", "[policy]\npsi_pad_to_multiple = 1000001\n"),
        "silo.toml: [policy] 'psi_pad_to_multiple' = 1000001 is above the limit of 1000000 ids",
    ),
    (
        "bool-as-int",
        _swap("min_intersection = 500", "min_intersection = true"),
        "silo.toml: [policy] 'min_intersection' must be an integer",
    ),
    (
        "unknown-protocol",
        _swap('["psi", "secureboost"]', '["psi", "psi2"]'),
        "silo.toml: [policy] 'protocols' has unknown value 'psi2'",
    ),
    (
        "unknown-role",
        _swap('roles = ["active"]', 'roles = ["boss"]'),
        "silo.toml: [policy] 'roles' has unknown value 'boss'",
    ),
    (
        "allowed-unknown-dataset",
        _swap("{customers = [", "{clients = ["),
        "silo.toml: [policy] allowed_columns names unknown dataset 'clients'",
    ),
    (
        "allowed-non-feature",
        _swap('{customers = ["PAY_0"]}', '{customers = ["default"]}'),
        "silo.toml: [policy] allowed_columns 'customers' lists 'default', not a declared feature",
    ),
    (
        "release-type",
        _swap("[policy]\n", '[policy]\nrelease_feature_names = "yes"\n'),
        "silo.toml: [policy] 'release_feature_names' must be true or false",
    ),
    (
        "release-partial-type",
        _swap("[policy]\n", "[policy]\nrelease_partial_scores = 1\n"),
        "silo.toml: [policy] 'release_partial_scores' must be true or false",
    ),
    (
        "no-tls",
        _swap(
            '[tls]\nca = "certs/ca.pem"\ncert = "certs/bank.pem"\nkey = "certs/bank.key"\n'
            'coordinator = "coordinator"\n',
            "",
        ),
        "silo.toml: top level needs 'tls'",
    ),
    (
        "tls-missing-key",
        _swap('key = "certs/bank.key"\n', ""),
        "silo.toml: [tls] needs 'key' (or insecure_plaintext = true)",
    ),
    (
        "tls-file-missing",
        _swap("certs/bank.key", "certs/nope.key"),
        "silo.toml: [tls] 'key' file not found",
    ),
    (
        "tls-insecure-and-ca",
        _swap("[tls]\n", "[tls]\ninsecure_plaintext = true\n"),
        "silo.toml: [tls] 'ca' conflicts with insecure_plaintext = true",
    ),
    (
        "tls-insecure-word",
        _swap("[tls]\n", "[tls]\ninsecure = true\n"),
        "silo.toml: [tls] has unknown key 'insecure'",
    ),
    (
        "listen",
        _swap('"127.0.0.1:50051"', '"localhost"'),
        "silo.toml: top level 'listen' = 'localhost' must be HOST:PORT",
    ),
    (
        "listen-port",
        _swap('"127.0.0.1:50051"', '"h:70000"'),
        "silo.toml: top level 'listen' = 'h:70000' must be HOST:PORT",
    ),
    (
        "database",
        _swap('"sqlite:///bank.db"', '"not a url"'),
        "silo.toml: top level 'database' is not a SQLAlchemy URL",
    ),
    (
        "party",
        _swap('party = "bank"', 'party = "b a n k"'),
        "silo.toml: top level 'party' = 'b a n k' is not a valid name",
    ),
]


@pytest.mark.parametrize(
    ("text", "message"), [(t, m) for _, t, m in BAD], ids=[i for i, _, _ in BAD]
)
def test_bad_config_is_one_line_naming_file_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^nope.toml: file not found"):
        load_silo_config(tmp_path / "nope.toml")


def test_dataclasses_are_frozen(tmp_path: Path) -> None:
    cfg = load(tmp_path, GOOD)
    with pytest.raises(AttributeError):
        cfg.party = "x"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        cfg.policy.min_intersection = 1  # type: ignore[misc]
