"""`fedsilo silo load-csv`: refusals are one line, a non-zero exit and an unchanged database;
id normalisation; `fedsilo silo check` reports rows and id formats (hashed, never raw)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from support import pg_schema

from fedsilo.cli.main import main

CONFIG = """party = "bank"
listen = "127.0.0.1:50999"
database = "{url}"
[tls]
insecure_plaintext = true
[datasets.customers]
table = "{table}"
id_column = "customer_id"
features = ["x"]
[policy]
protocols = ["psi"]
roles = ["active"]
"""
GOOD = "customer_id,x\nC001,1\nC002,2\nC003,3\n"


def _config(tmp_path: Path, url: str, table: str = "customers") -> Path:
    path = tmp_path / "bank.toml"
    path.write_text(CONFIG.format(url=url, table=table))
    return path


def _csv(tmp_path: Path, body: str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


def _dump(url: str) -> list[object]:
    """Every table of the database with all its rows (what 'unchanged' means)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                names = [
                    r[0]
                    for r in conn.execute(
                        text("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")
                    )
                ]
            else:
                names = [
                    r[0]
                    for r in conn.execute(
                        text(
                            "SELECT table_name FROM information_schema.tables "
                            "WHERE table_schema = current_schema() ORDER BY table_name"
                        )
                    )
                ]
            return [
                (n, sorted(map(tuple, conn.execute(text(f'SELECT * FROM "{n}"'))))) for n in names
            ]
    finally:
        engine.dispose()


def _load(config: Path, csv: Path, *extra: str) -> int:
    return main(["silo", "load-csv", str(csv), "--config", str(config), *extra])


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


REFUSED = {
    "duplicate": (
        "customer_id,x\nC001,1\nC002,2\nC001,3\n",
        (),
        "lines 2 and 4: column 'customer_id' holds the same id",
    ),
    "duplicate after normalisation": (
        "customer_id,x\nC001,1\n c001 ,2\n",
        ("--normalize-ids", "trim,lower"),
        "lines 2 and 3: column 'customer_id' holds the same id after normalisation ('c001')",
    ),
    "empty id": ("customer_id,x\nC001,1\n,2\n", (), "line 3: column 'customer_id' is empty"),
    "blank id": (
        "customer_id,x\nC001,1\n   ,2\n",
        ("--normalize-ids", "trim"),
        "line 3: column 'customer_id' is empty",
    ),
    "short row": ("customer_id,x\nC001,1\nC002\n", (), "line 3: has 1 fields, the header has 2"),
    "no id column": ("id,x\nC001,1\n", (), "no column 'customer_id'"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refusals_write_nothing(
    tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    body, extra, message = REFUSED[case]
    url = f"sqlite:///{tmp_path / 'bank.db'}"
    config = _config(tmp_path, url)
    create_engine(url).dispose()
    before = _dump(url)
    assert _load(config, _csv(tmp_path, body), *extra) == 3
    assert message in _one_line(capsys)
    assert _dump(url) == before == []


def test_existing_table_is_refused_unless_replace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'bank.db'}"
    config = _config(tmp_path, url)
    assert _load(config, _csv(tmp_path, GOOD)) == 0
    loaded = _dump(url)
    assert loaded == [("customers", [("C001", 1), ("C002", 2), ("C003", 3)])]
    capsys.readouterr()
    other = _csv(tmp_path, "customer_id,x\nD1,9\n", "other.csv")
    assert _load(config, other) == 3
    assert "data" not in (line := _one_line(capsys)) and "table 'customers' already exists" in line
    assert _dump(url) == loaded
    # a bad file with --replace keeps the old table whole
    assert _load(config, _csv(tmp_path, "customer_id,x\nD1,1\nD1,2\n", "dup.csv"), "--replace") == 3
    assert "same id" in _one_line(capsys)
    assert _dump(url) == loaded
    assert _load(config, other, "--if-missing") == 0
    assert _dump(url) == loaded
    assert _load(config, other, "--replace") == 0
    assert _dump(url) == [("customers", [("D1", 9)])]


def test_normalisation_makes_two_silos_ids_match(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bank.db'}"
    config = _config(tmp_path, url)
    messy = _csv(tmp_path, "customer_id,x\n  C001 ,1\nc002,2\nC003\t,3\n")
    assert _load(config, messy, "--normalize-ids", "trim,lower") == 0
    assert _dump(url) == [("customers", [("c001", 1), ("c002", 2), ("c003", 3)])]


def test_leading_zeros_keep_ids_text(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bank.db'}"
    config = _config(tmp_path, url)
    assert _load(config, _csv(tmp_path, "customer_id,x\n007,1\n7,2\n")) == 0
    assert _dump(url) == [("customers", [("007", 1), ("7", 2)])]


def test_unknown_normalisation_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'bank.db'}"
    config = _config(tmp_path, url)
    assert _load(config, _csv(tmp_path, GOOD), "--normalize-ids", "trim,casefold") == 2
    assert "unknown step 'casefold'" in _one_line(capsys)
    assert not (tmp_path / "bank.db").exists() or _dump(url) == []


def test_check_reports_rows_and_hashed_id_formats(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'bank.db'}"
    config = _config(tmp_path, url)
    body = "customer_id,x\n" + "".join(f"C{i:05d},{i}\n" for i in range(40)) + "ab-1,0\n"
    assert _load(config, _csv(tmp_path, body)) == 0
    capsys.readouterr()
    assert main(["silo", "check", "--config", str(config), "--json"]) == 0
    out = capsys.readouterr().out
    report = json.loads(out)
    [ds] = report["datasets"]
    assert report["party"] == "bank" and ds["dataset"] == "customers" and ds["rows"] == 41
    ids = ds["ids"]
    assert ids["type"] == "text" and ids["case"] == "mixed" and ids["length"] == [4, 6]
    assert ids["formats"][0] == {"format": "A99999", "share": round(40 / 41, 3)}
    assert {"format": "aa-9", "share": round(1 / 41, 3)} in ids["formats"]
    assert len(ids["sample_sha256_12"]) == 3 and all(len(h) == 12 for h in ids["sample_sha256_12"])
    assert "C00000" not in out and "ab-1" not in out  # never a raw id
    assert main(["silo", "check", "--config", str(config)]) == 0
    human = capsys.readouterr().out
    assert "41 rows" in human and "A99999 (98%)" in human and "C00000" not in human


# --- PostgreSQL: the same refusals in a schema of its own ---------------------------------------


@pytest.fixture
def deploy_pg(pg_server: str) -> Iterator[str]:
    """A fresh schema named deploy_* (its search_path), dropped afterwards."""
    with pg_schema(pg_server, "deploy") as url:
        yield url


@pytest.mark.postgres
def test_postgres_refusals_and_replace(
    tmp_path: Path, deploy_pg: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, deploy_pg, table="deploy_customers")
    assert _load(config, _csv(tmp_path, "customer_id,x\nC1,1\nC1,2\n", "dup.csv")) == 3
    assert "same id" in _one_line(capsys)
    assert _dump(deploy_pg) == []
    assert _load(config, _csv(tmp_path, GOOD)) == 0
    loaded = _dump(deploy_pg)
    assert loaded == [("deploy_customers", [("C001", 1), ("C002", 2), ("C003", 3)])]
    capsys.readouterr()
    assert _load(config, _csv(tmp_path, GOOD)) == 3
    assert "already exists" in _one_line(capsys)
    assert _load(config, _csv(tmp_path, "customer_id,x\nD1,1\n,2\n", "null.csv"), "--replace") == 3
    assert "is empty" in _one_line(capsys)
    assert _dump(deploy_pg) == loaded
    assert _load(config, _csv(tmp_path, "customer_id,x\nD1,1\n", "new.csv"), "--replace") == 0
    assert _dump(deploy_pg) == [("deploy_customers", [("D1", 1)])]
