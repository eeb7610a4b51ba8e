"""Silo data layer on SQLite and PostgreSQL: validation, chunked reads, own tables, ledger.

Every bad-input test also proves that nothing was written: no ``fedsilo_`` table exists after a
failed start.
"""

from __future__ import annotations

import csv
import gzip
import random
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import (
    Column,
    Engine,
    Float,
    Integer,
    MetaData,
    Table,
    Text,
    func,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.types import TypeEngine

from fedsilo import settings
from fedsilo.errors import ConfigError, DataError, JobError, NotFound, PolicyError
from fedsilo.silo_node.config import SiloConfig, load_silo_config
from fedsilo.silo_node.data import SiloData, make_engine, normalise_id, open_silo
from fedsilo.silo_node.demo_data import load_csv_into_table, write_demo_consortium
from fedsilo.silo_node.store import ALIGNMENT_ROWS, SiloStore

# --- fixtures and helpers -------------------------------------------------------------------------

CUSTOMERS = """
[datasets.customers]
table = "customers"
id_column = "customer_id"
features = ["PAY_0", "PAY_2"]
label = "default"
"""
N = 20


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


def write_config(
    tmp_path: Path, db_url: str, datasets: str = CUSTOMERS, policy: str = ""
) -> SiloConfig:
    path = tmp_path / "silo.toml"
    path.write_text(
        f'party = "bank"\nlisten = "127.0.0.1:1"\ndatabase = "{db_url}"\n'
        f"[tls]\ninsecure_plaintext = true\n{datasets}\n"
        f'[policy]\nprotocols = ["psi"]\nroles = ["active"]\n{policy}'
    )
    return load_silo_config(path)


def create(
    engine: Engine, name: str, cols: list[tuple[str, TypeEngine[Any]]], rows: list[tuple[Any, ...]]
) -> Table:
    table = Table(name, MetaData(), *[Column(n, t) for n, t in cols])
    table.create(engine)
    if rows:
        with engine.begin() as conn:
            conn.execute(
                insert(table), [dict(zip([n for n, _ in cols], r, strict=True)) for r in rows]
            )
    return table


def std_rows() -> list[tuple[Any, ...]]:
    """C001..C020; PAY_0 NULL every 7th row; label alternating."""
    rows = [(f"C{i:03d}", None if i % 7 == 0 else i * 1.5, i, i % 2) for i in range(1, N + 1)]
    random.Random(1).shuffle(rows)
    return rows


STD_COLS: list[tuple[str, TypeEngine[Any]]] = [
    ("customer_id", Text()),
    ("PAY_0", Float()),
    ("PAY_2", Integer()),
    ("default", Integer()),
]


def std_table(
    engine: Engine, rows: list[tuple[Any, ...]] | None = None, **types: TypeEngine[Any]
) -> None:
    cols = [(n, types.get(n, t)) for n, t in STD_COLS]
    create(engine, "customers", cols, std_rows() if rows is None else rows)


def with_row(row: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    return [*std_rows(), row]


def fedsilo_tables(engine: Engine) -> list[str]:
    return [t for t in inspect(engine).get_table_names() if t.startswith("fedsilo_")]


@pytest.fixture
def silo(engine: Engine, db_url: str, tmp_path: Path) -> tuple[SiloData, SiloStore]:
    std_table(engine)
    opened = open_silo(write_config(tmp_path, db_url), engine=engine)
    return opened.data, opened.store


# --- validation: each bad input is one line, and writes nothing ----------------------------------


def raw(*statements: str) -> Callable[[Engine], None]:
    def setup(engine: Engine) -> None:
        with engine.begin() as conn:
            for s in statements:
                conn.execute(text(s))

    return setup


SQLITE_DDL = (
    'CREATE TABLE customers (customer_id {id}, "PAY_0" {pay0}, "PAY_2" INTEGER, "default" INTEGER)'
)
PREFIX = "silo.toml: dataset 'customers' table 'customers'"

# name -> (setup, datasets TOML, expected message start, only on this dialect)
BAD: dict[str, tuple[Callable[[Engine], None], str, str, str | None]] = {
    "missing-table": (raw("SELECT 1"), CUSTOMERS, f"{PREFIX} does not exist", None),
    "missing-column": (
        lambda e: create(e, "customers", [c for c in STD_COLS if c[0] != "PAY_2"], []),
        CUSTOMERS,
        f"{PREFIX} column 'PAY_2' does not exist",
        None,
    ),
    "column-case": (
        lambda e: create(
            e, "customers", [(n.lower() if n == "PAY_2" else n, t) for n, t in STD_COLS], []
        ),
        CUSTOMERS,
        f"{PREFIX} column 'PAY_2' does not exist (did you mean 'pay_2'?)",
        None,
    ),
    "empty": (lambda e: std_table(e, rows=[]), CUSTOMERS, f"{PREFIX} is empty", None),
    "text-feature": (
        lambda e: std_table(e, rows=[("C1", "abc", 1, 0)], PAY_0=Text()),
        CUSTOMERS,
        f"{PREFIX} column 'PAY_0' is not numeric (type TEXT, value 'abc')",
        None,
    ),
    "text-in-real-column": (
        raw(
            SQLITE_DDL.format(id="TEXT", pay0="REAL"),
            "INSERT INTO customers VALUES ('C1', 1.0, 1, 0), ('C2', 'abc', 2, 1)",
        ),
        CUSTOMERS,
        f"{PREFIX} column 'PAY_0' is not numeric (value 'abc')",
        "sqlite",
    ),
    "text-in-untyped-column": (
        raw(
            SQLITE_DDL.format(id="TEXT", pay0=""),
            "INSERT INTO customers VALUES ('C1', 1, 1, 0), ('C2', x'00ff', 2, 1)",
        ),
        CUSTOMERS,
        f"{PREFIX} column 'PAY_0' is not numeric (value b'\\x00\\xff')",
        "sqlite",
    ),
    "duplicate-id": (
        lambda e: std_table(e, rows=with_row(("C003", 1.0, 1, 0))),
        CUSTOMERS,
        f"{PREFIX} column 'customer_id' has duplicate id 'C003' (2 rows)",
        None,
    ),
    "duplicate-after-trim": (
        lambda e: std_table(e, rows=with_row((" C003 ", 1.0, 1, 0))),
        CUSTOMERS,
        f"{PREFIX} column 'customer_id' has duplicate id 'C003' (2 rows)",
        None,
    ),
    "null-id": (
        lambda e: std_table(e, rows=with_row((None, 1.0, 1, 0))),
        CUSTOMERS,
        f"{PREFIX} column 'customer_id' has 1 NULL or empty ids",
        None,
    ),
    "blank-id": (
        lambda e: std_table(e, rows=with_row(("  ", 1.0, 1, 0))),
        CUSTOMERS,
        f"{PREFIX} column 'customer_id' has 1 NULL or empty ids",
        None,
    ),
    "mixed-ids": (
        raw(
            SQLITE_DDL.format(id="", pay0="REAL"),
            "INSERT INTO customers VALUES (1, 1.0, 1, 0), ('C2', 2.0, 2, 1), ('C3', 2.0, 2, 1)",
        ),
        CUSTOMERS,
        f"{PREFIX} column 'customer_id' has ids of mixed type (integer: 1, text: 2)",
        "sqlite",
    ),
    "float-ids": (
        lambda e: std_table(e, rows=[(1.5, 1.0, 1, 0)], customer_id=Float()),
        CUSTOMERS,
        f"{PREFIX} column 'customer_id' must hold integer or text ids",
        None,
    ),
    "not-nfc-id": (
        lambda e: std_table(e, rows=with_row(("Cafe\u0301", 1.0, 1, 0))),
        CUSTOMERS,
        f"{PREFIX} column 'customer_id' has id 'Cafe\u0301' that is not Unicode NFC",
        None,
    ),
    "tab-padded-id": (
        lambda e: std_table(e, rows=with_row(("\tC999", 1.0, 1, 0))),
        CUSTOMERS,
        f"{PREFIX} column 'customer_id' has id '\\tC999' that is not Unicode NFC",
        None,
    ),
    "label-not-binary": (
        lambda e: std_table(e, rows=with_row(("C999", 1.0, 1, 2))),
        CUSTOMERS,
        f"{PREFIX} column 'default' is not binary 0/1 (value 2)",
        None,
    ),
    "label-null": (
        lambda e: std_table(e, rows=with_row(("C999", 1.0, 1, None))),
        CUSTOMERS,
        f"{PREFIX} column 'default' has NULL labels",
        None,
    ),
    "label-text": (
        lambda e: std_table(e, rows=[("C1", 1.0, 1, "yes")], default=Text()),
        CUSTOMERS,
        f"{PREFIX} column 'default' is not numeric (type TEXT, value 'yes')",
        None,
    ),
    "query-fails": (
        std_table,
        CUSTOMERS.replace('table = "customers"', 'query = "SELECT * FROM nope"'),
        "silo.toml: dataset 'customers' query cannot run (",
        None,
    ),
    "query-missing-column": (
        std_table,
        CUSTOMERS.replace(
            'table = "customers"', """query = 'SELECT customer_id, "PAY_0" FROM customers'"""
        ),
        "silo.toml: dataset 'customers' query column 'PAY_2' does not exist",
        None,
    ),
    "query-text-feature": (
        std_table,
        CUSTOMERS.replace(
            'table = "customers"',
            """query = '''
            SELECT customer_id, 'abc' AS "PAY_0", "PAY_2", "default" FROM customers'''""",
        ),
        "silo.toml: dataset 'customers' query column 'PAY_0' is not numeric (value 'abc')",
        None,
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_data_fails_in_one_line_and_writes_nothing(
    case: str, engine: Engine, db_url: str, tmp_path: Path
) -> None:
    setup, datasets, message, only = BAD[case]
    if only and engine.dialect.name != only:
        pytest.skip(f"{only} only: other databases type their columns")
    setup(engine)
    config = write_config(tmp_path, db_url, datasets)
    with pytest.raises(DataError) as info:
        open_silo(config, engine=engine)
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value)
    assert fedsilo_tables(engine) == []


def test_missing_sqlite_file_is_not_created(tmp_path: Path) -> None:
    config = write_config(tmp_path, "sqlite:///missing.db")
    with pytest.raises(DataError, match=r"^silo.toml: database file not found: .*missing.db$"):
        open_silo(config)
    assert not (tmp_path / "missing.db").exists()


def test_unreachable_database(tmp_path: Path) -> None:
    config = write_config(tmp_path, "postgresql+psycopg://nobody:secret@127.0.0.1:1/x")
    with pytest.raises(DataError) as info:
        open_silo(config)
    assert str(info.value).startswith("silo.toml: cannot connect to the database (")
    assert "secret" not in str(info.value) and "\n" not in str(info.value)


def test_validate_counts_and_creates_tables_only_afterwards(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    std_table(engine)
    config = write_config(tmp_path, db_url)
    data = SiloData(engine, config)
    assert data.validate() == {"customers": N}
    assert fedsilo_tables(engine) == []
    opened = open_silo(config, engine=engine)
    assert opened.rows == {"customers": N}
    assert set(fedsilo_tables(engine)) >= {"fedsilo_alignment", "fedsilo_ledger"}
    if engine.dialect.name == "sqlite":  # readers must not block the ledger's writer
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    [info] = opened.data.describe()
    assert (info.name, info.rows, info.id_column, info.features, info.label) == (
        "customers",
        N,
        "customer_id",
        ("PAY_0", "PAY_2"),
        "default",
    )
    assert opened.data.row_count("customers") == N


# --- ids and reads --------------------------------------------------------------------------------

MULTI = (
    CUSTOMERS
    + """
[datasets.accounts]
table = "accounts"
id_column = "acct"
features = ["x"]

[datasets.padded]
table = "padded"
id_column = "pid"
features = ["x"]

[datasets.recent]
query = 'SELECT customer_id, "PAY_0", "PAY_2", "default" FROM customers WHERE "PAY_2" > 5'
id_column = "customer_id"
features = ["PAY_0", "PAY_2"]
label = "default"
"""
)


@pytest.fixture
def multi(engine: Engine, db_url: str, tmp_path: Path) -> tuple[SiloData, SiloStore]:
    std_table(engine)
    create(
        engine,
        "accounts",
        [("acct", Integer()), ("x", Float())],
        [(i * 10, float(i)) for i in range(12, 0, -1)],
    )
    create(
        engine,
        "padded",
        [("pid", Text()), ("x", Float())],
        [(f" P{i} ", float(i)) for i in range(5)],
    )
    opened = open_silo(write_config(tmp_path, db_url, MULTI), engine=engine)
    return opened.data, opened.store


def test_normalise_id_rule() -> None:
    assert normalise_id(42) == "42" and normalise_id(-7) == "-7"
    assert normalise_id("  C1\t") == "C1"
    assert normalise_id("Cafe\u0301") == "Caf\u00e9"
    for bad in (1.0, b"x", True, None):
        with pytest.raises(DataError):
            normalise_id(bad)


def test_iter_ids_in_chunks_sorted_and_normalised(multi: tuple[SiloData, SiloStore]) -> None:
    data, _ = multi
    chunks = list(data.iter_ids("customers", chunk_rows=6))
    assert [len(c) for c in chunks] == [6, 6, 6, 2]
    assert [i for c in chunks for i in c] == [f"C{i:03d}" for i in range(1, N + 1)]
    assert [i for c in data.iter_ids("accounts", 5) for i in c] == [
        str(i * 10) for i in range(1, 13)
    ]
    assert [i for c in data.iter_ids("padded") for i in c] == [f"P{i}" for i in range(5)]
    assert data.id_kind(data.dataset("accounts")) == "int"
    assert data.id_kind(data.dataset("padded")) == "expr"
    assert data.id_kind(data.dataset("customers")) == "text"
    with pytest.raises(NotFound):
        list(data.iter_ids("nope"))


def expected_customer(i: int) -> list[float]:
    return [np.nan if i % 7 == 0 else i * 1.5, float(i)]


def test_read_aligned_follows_alignment_order(multi: tuple[SiloData, SiloStore]) -> None:
    data, store = multi
    order = list(range(1, N + 1))
    random.Random(7).shuffle(order)
    order = order[:15]
    store.save_alignment("job1/customers", "job1", "customers", (f"C{i:03d}" for i in order))
    chunks = list(data.read_aligned("customers", "job1/customers", ["PAY_0", "PAY_2"], 4))
    assert [len(c) for c in chunks] == [4, 4, 4, 3]
    want = np.array([expected_customer(i) for i in order])
    np.testing.assert_array_equal(np.vstack(chunks), want)
    got = data.load_aligned("customers", "job1/customers", ["PAY_0", "PAY_2"], chunk_rows=4)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(
        data.load_aligned("customers", "job1/customers", ["PAY_2"]), want[:, 1:]
    )
    labels = data.load_aligned_labels("customers", "job1/customers", chunk_rows=4)
    np.testing.assert_array_equal(labels, np.array([i % 2 for i in order], dtype=float))


def test_aligned_position_windows(multi: tuple[SiloData, SiloStore]) -> None:
    data, store = multi
    order = [5, 3, 9, 1, 14, 2, 8]
    store.save_alignment("w", "j", "customers", [f"C{i:03d}" for i in order])
    want = np.array([expected_customer(i) for i in order])
    cols = ["PAY_0", "PAY_2"]
    np.testing.assert_array_equal(
        data.load_aligned("customers", "w", cols, 2, positions=(2, 6)), want[2:6]
    )
    chunks = list(data.read_aligned("customers", "w", cols, 2, positions=(1, 4)))
    assert [len(c) for c in chunks] == [2, 1]
    np.testing.assert_array_equal(np.vstack(chunks), want[1:4])
    assert data.load_aligned("customers", "w", cols, positions=(5, 99)).shape == (2, 2)
    assert data.load_aligned("customers", "w", cols, positions=(9, 12)).shape == (0, 2)
    np.testing.assert_array_equal(
        data.load_aligned_labels("customers", "w", positions=(0, 3)), [i % 2 for i in order[:3]]
    )
    assert [i for c in store.iter_alignment_ids("w", 2, positions=(3, 6)) for i in c] == [
        "C001",
        "C014",
        "C002",
    ]


@pytest.mark.parametrize(
    ("dataset", "ids", "values"),
    [
        ("accounts", ["70", "10", "120"], [7.0, 1.0, 12.0]),
        ("padded", ["P3", "P0"], [3.0, 0.0]),
    ],
)
def test_read_aligned_on_int_and_padded_ids(
    multi: tuple[SiloData, SiloStore], dataset: str, ids: list[str], values: list[float]
) -> None:
    data, store = multi
    store.save_alignment("a", "j", dataset, ids)
    np.testing.assert_array_equal(data.load_aligned(dataset, "a", ["x"])[:, 0], values)
    np.testing.assert_array_equal(data.load_rows(dataset, ids, ["x"])[:, 0], values)


def test_query_dataset_reads(multi: tuple[SiloData, SiloStore]) -> None:
    data, store = multi
    assert data.row_count("recent") == N - 5
    store.save_alignment("r", "j", "recent", ["C014", "C006"])
    np.testing.assert_array_equal(
        data.load_aligned("recent", "r", ["PAY_0", "PAY_2"]),
        [expected_customer(14), expected_customer(6)],
    )


def test_load_rows_in_given_order_and_missing_ids(
    multi: tuple[SiloData, SiloStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    data, _ = multi
    monkeypatch.setattr(settings, "LOOKUP_IDS_PER_QUERY", 3)
    ids = ["C009", "C001", "C014", "C002", "C007"]
    np.testing.assert_array_equal(
        data.load_rows("customers", ids, ["PAY_0", "PAY_2"]),
        [expected_customer(int(i[1:])) for i in ids],
    )
    with pytest.raises(DataError) as info:
        data.load_rows("customers", ["C001", "SECRET42", "C002"], ["PAY_2"])
    assert str(info.value) == "1 of 3 requested ids are not in dataset 'customers'"
    with pytest.raises(DataError, match="1 of 2"):
        data.load_rows("accounts", ["10", "010"], ["x"])


def test_reads_enforce_policy(engine: Engine, db_url: str, tmp_path: Path) -> None:
    std_table(engine)
    config = write_config(tmp_path, db_url, policy='allowed_columns = {customers = ["PAY_0"]}')
    opened = open_silo(config, engine=engine)
    opened.store.save_alignment("a", "j", "customers", ["C001"])
    opened.data.load_aligned("customers", "a", ["PAY_0"])
    with pytest.raises(PolicyError, match="'PAY_2'"):
        opened.data.load_aligned("customers", "a", ["PAY_0", "PAY_2"])
    with pytest.raises(PolicyError, match="'customer_id'"):
        list(opened.data.read_aligned("customers", "a", ["customer_id"]))
    with pytest.raises(PolicyError):
        opened.data.load_rows("customers", ["C001"], ["PAY_2"])


def test_aligned_read_refuses_vanished_rows_and_wrong_dataset(
    silo: tuple[SiloData, SiloStore], engine: Engine
) -> None:
    data, store = silo
    store.save_alignment("a", "j", "customers", ["C001", "C002", "C003"])
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM customers WHERE customer_id = 'C002'"))
    with pytest.raises(DataError) as info:
        data.load_aligned("customers", "a", ["PAY_2"])
    assert (
        str(info.value) == "the row at position 1 of alignment 'a' is no longer in dataset "
        "'customers'"
    )
    with pytest.raises(NotFound):
        data.load_aligned("customers", "nope", ["PAY_2"])


# --- alignments -----------------------------------------------------------------------------------


def alignment_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(ALIGNMENT_ROWS)).scalar_one())


def failing_ids(n_ok: int) -> Iterator[str]:
    for i in range(n_ok):
        yield f"C{i + 1:03d}"
    raise RuntimeError("PSI died half-way")


def test_alignment_is_atomic(
    silo: tuple[SiloData, SiloStore], engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, store = silo
    monkeypatch.setattr(settings, "WRITE_CHUNK_ROWS", 2)
    with pytest.raises(RuntimeError):
        store.save_alignment("a", "j", "customers", failing_ids(5))
    assert store.list_alignments() == [] and alignment_rows(engine) == 0
    with pytest.raises(DataError, match="lists the same id twice"):
        store.save_alignment("a", "j", "customers", ["C001", "C002", "C003", "C001"])
    assert store.list_alignments() == [] and alignment_rows(engine) == 0

    info = store.save_alignment("a", "j", "customers", ["C003", "C001", "C002"])
    assert (info.name, info.job_id, info.dataset, info.rows) == ("a", "j", "customers", 3)
    with pytest.raises(JobError, match="already exists"):
        store.save_alignment("a", "j2", "customers", ["C004"])
    with pytest.raises(RuntimeError):  # a failed replace keeps the old alignment whole
        store.save_alignment("a", "j2", "customers", failing_ids(4), replace=True)
    assert store.alignment_info("a").rows == 3
    assert [i for c in store.iter_alignment_ids("a", 2) for i in c] == ["C003", "C001", "C002"]

    store.save_alignment("a", "j2", "customers", ["C005"], replace=True)
    assert store.alignment_info("a").job_id == "j2" and alignment_rows(engine) == 1
    store.delete_alignment("a")
    assert store.list_alignments() == [] and alignment_rows(engine) == 0
    with pytest.raises(NotFound):
        store.alignment_info("a")
    with pytest.raises(NotFound):
        store.delete_alignment("a")


# --- model parts, checkpoints, scores -------------------------------------------------------------


def test_model_parts_and_checkpoints(silo: tuple[SiloData, SiloStore]) -> None:
    _, store = silo
    store.save_model_part("m1", "secureboost", {"splits": {"3": [1, 0.5]}, "n": 2})
    part = store.load_model_part("m1")
    assert (part.kind, part.payload) == ("secureboost", {"splits": {"3": [1, 0.5]}, "n": 2})
    with pytest.raises(DataError, match="already exists"):
        store.save_model_part("m1", "secureboost", {})
    store.save_model_part("m1", "lr", {"w": [1.0]}, replace=True)
    assert [(m, k) for m, k, _ in store.list_model_parts()] == [("m1", "lr")]
    with pytest.raises(DataError, match="not JSON"):
        store.save_model_part("m2", "lr", {"w": float("nan")})
    with pytest.raises(NotFound):
        store.load_model_part("m2")

    assert store.load_checkpoint("j", "tree") is None
    store.save_checkpoint("j", "tree", {"done": 1})
    store.save_checkpoint("j", "tree", {"done": 2})
    assert store.load_checkpoint("j", "tree") == {"done": 2}


def test_scores_are_idempotent(
    silo: tuple[SiloData, SiloStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, store = silo
    monkeypatch.setattr(settings, "WRITE_CHUNK_ROWS", 3)
    at = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    rows = [(f"C{i:03d}", i / 10, "v1", at) for i in range(1, 8)]
    store.write_scores("scores", rows)
    store.write_scores("scores", rows)  # a resumed job writes the same chunk again
    store.write_scores("scores", [("C001", 0.99, "v1", at.isoformat())])  # first score wins
    store.write_scores("scores", [("C001", 0.5, "v2", at)])
    assert store.score_count("scores", "v1") == 7
    assert store.scored_ids("scores", "v1") == {r[0] for r in rows}
    assert store.scored_ids("scores", "v2") == {"C001"}
    with store.engine.connect() as conn:
        got = conn.execute(
            text("SELECT score FROM scores WHERE id = 'C001' AND model_version = 'v1'")
        ).scalar_one()
        total = conn.execute(text("SELECT COUNT(*) FROM scores")).scalar_one()
    assert got == pytest.approx(0.1) and total == 8


def test_scores_with_reason_codes(silo: tuple[SiloData, SiloStore]) -> None:
    _, store = silo
    at = datetime(2024, 1, 2, tzinfo=UTC)
    rows = [("C001", 0.7, "v1", at), ("C002", 0.1, "v1", at)]
    store.write_scores("explained", rows, reasons=[["R1", "R2"], [None, None]])
    store.write_scores("explained", [("C003", 0.2, "v1", at)], reasons=[["R9", None]])
    with store.engine.connect() as conn:
        got = conn.execute(text("SELECT id, reason_1, reason_2 FROM explained ORDER BY id")).all()
    assert [tuple(r) for r in got] == [("C001", "R1", "R2"), ("C002", None, None),
                                       ("C003", "R9", None)]  # fmt: skip
    with pytest.raises(DataError, match="has 2 reason column"):
        store.ensure_score_table("explained", reasons=3)
    store.write_scores("plain", rows)  # a table without reasons refuses reasons later
    with pytest.raises(DataError, match="has 0 reason column"):
        store.write_scores("plain", rows, reasons=[["R1"], ["R2"]])


@pytest.mark.parametrize(
    "name", ["scores; DROP TABLE x", "1scores", "fedsilo_ledger", "", "a" * 64, "sc-ores"]
)
def test_score_table_names_are_checked(silo: tuple[SiloData, SiloStore], name: str) -> None:
    with pytest.raises(DataError):
        silo[1].ensure_score_table(name)


def test_score_table_refuses_a_foreign_table(silo: tuple[SiloData, SiloStore]) -> None:
    with pytest.raises(DataError, match="'customers' exists and is not a fedsilo score table"):
        silo[1].ensure_score_table("customers")


# --- audit ledger ---------------------------------------------------------------------------------


def append(store: SiloStore, i: int, job: str = "j1") -> None:
    store.ledger.append(
        job_id=job,
        step="psi.blind",
        peer="bureau",
        kind="psi.blinded",
        nbytes=100 + i,
        reveals=f"{i} blinded points",
    )


def test_ledger_chain_verifies_and_detects_tampering(
    silo: tuple[SiloData, SiloStore], engine: Engine
) -> None:
    _, store = silo
    assert store.ledger.verify() == (True, None)
    for i in range(5):
        append(store, i, job="j1" if i % 2 == 0 else "j2")
    entries = store.ledger.entries()
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    genesis = store.ledger.genesis()  # per silo: its party and a random nonce, not zeros
    assert genesis.party == "bank" and genesis.valid() and genesis.hash != "0" * 64
    assert entries[0].prev_hash == genesis.hash and entries[1].prev_hash == entries[0].hash
    assert [e.seq for e in store.ledger.entries("j2")] == [2, 4]
    assert store.ledger.verify() == (True, None)
    assert store.ledger.head() == (5, entries[-1].hash)
    with engine.begin() as conn:
        conn.execute(text("UPDATE fedsilo_ledger SET reveals = 'nothing' WHERE seq = 3"))
    assert store.ledger.verify() == (False, 3)


def test_ledger_detects_a_deleted_row(silo: tuple[SiloData, SiloStore], engine: Engine) -> None:
    _, store = silo
    for i in range(4):
        append(store, i)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM fedsilo_ledger WHERE seq = 2"))
    assert store.ledger.verify() == (False, 3)


def test_ledger_concurrent_appends_stay_linear(silo: tuple[SiloData, SiloStore]) -> None:
    _, store = silo
    threads = [
        threading.Thread(target=lambda k=k: [append(store, 10 * k + i) for i in range(8)])
        for k in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [e.seq for e in store.ledger.entries()] == list(range(1, 33))
    assert store.ledger.verify() == (True, None)
    assert not hasattr(store.ledger, "update") and not hasattr(store.ledger, "delete")


# --- CSV loader and demo consortium (SQLite only) ------------------------------------------------


def test_load_csv_into_table_infers_types(tmp_path: Path) -> None:
    path = tmp_path / "d.csv.gz"
    with gzip.open(path, "wt", newline="") as fh:
        csv.writer(fh).writerows(
            [["id", "a", "b", "c"]]
            + [[str(i), str(i), f"{i}.5" if i else "", "x"] for i in range(7)]
        )
    engine = make_engine(f"sqlite:///{tmp_path}/t.db")
    assert load_csv_into_table(engine, "t", path, "id", chunk_rows=3) == 7
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, a, b, c, typeof(b) FROM t ORDER BY id")).all()
    assert rows[0] == (0, 0, None, "x", "null") and rows[6] == (6, 6, 6.5, "x", "real")
    with pytest.raises(Exception, match="already exists"):
        load_csv_into_table(engine, "t", path, "id")
    with pytest.raises(DataError, match="no column 'nope'"):
        load_csv_into_table(engine, "t2", path, "nope")
    engine.dispose()


def test_demo_consortium(tmp_path: Path) -> None:
    configs = write_demo_consortium(tmp_path / "plain", tls=False)
    assert set(configs) == {"bank", "bureau", "lender"}
    ids: dict[str, set[str]] = {}
    for party, path in configs.items():
        config = load_silo_config(path)
        opened = open_silo(config)
        assert config.tls.insecure_plaintext
        ids[party] = {i for c in opened.data.iter_ids("customers") for i in c}
        opened.data.engine.dispose()
    assert {p: len(v) for p, v in ids.items()} == {"bank": 28200, "bureau": 28500, "lender": 27900}
    for other in ("bureau", "lender"):
        assert 1000 <= len(ids[other] - ids["bank"]) <= 2000
    assert load_silo_config(configs["bank"]).datasets["customers"].label == "default"
    # the scorecard example (examples/scorecard.toml) runs stats -> woe -> select on the demo
    for path in configs.values():
        policy = load_silo_config(path).policy
        assert {"stats", "woe", "select"} <= set(policy.protocols)
        assert policy.release_statistics

    secure = write_demo_consortium(tmp_path / "tls", tls=True)
    with pytest.raises(ConfigError, match=r"^bank.toml: \[tls\] 'ca' file not found"):
        load_silo_config(secure["bank"])
    certs = tmp_path / "tls" / "certs"
    certs.mkdir()
    for name in ("ca.pem", "bank.pem", "bank.key"):
        (certs / name).write_text("x")
    tls = load_silo_config(secure["bank"]).tls
    assert (tls.ca, tls.cert, tls.key, tls.coordinator) == (
        certs / "ca.pem",
        certs / "bank.pem",
        certs / "bank.key",
        "coordinator",
    )


# --- public API -----------------------------------------------------------------------------------


def test_exported_names() -> None:
    from fedsilo.silo_node import config, data, demo_data, store

    assert sorted(data.__all__) == [
        "DatasetInfo",
        "OpenedSilo",
        "SiloData",
        "make_engine",
        "normalise_id",
        "open_silo",
    ]
    assert sorted(store.__all__) == [
        "ALIGNMENTS",
        "ALIGNMENT_ROWS",
        "AlignmentInfo",
        "GENESIS_HASH",
        "Ledger",
        "LedgerEntry",
        "ModelPart",
        "SiloStore",
        "check_table_name",
        "metadata",
    ]
    assert sorted(config.__all__) == [
        "DatasetConfig",
        "KNOWN_PROTOCOLS",
        "KNOWN_ROLES",
        "PolicyConfig",
        "ServingConfig",
        "SiloConfig",
        "TlsConfig",
        "load_silo_config",
    ]
    assert sorted(demo_data.__all__) == [
        "DEMO_PARTIES",
        "DemoSilo",
        "load_csv_into_table",
        "write_consortium",
        "write_demo_consortium",
    ]
    for module in (config, data, demo_data, store):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"
    # nothing executable is ever stored: the store never imports pickle
    assert "pickle" not in Path(store.__file__).read_text()
