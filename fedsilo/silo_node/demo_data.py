"""Load CSV files into a silo database, and lay out the bundled three-party demo consortium.

``load_csv_into_table`` (:mod:`fedsilo.silo_node.csv_load`, re-exported here) is what an operator
trying fedsilo (and every test) needs first: a table in a real database.

``write_demo_consortium`` turns the bundled data (``fedsilo/data/demo_*.csv.gz``, made by
``scripts/make_demo_data.py`` from the UCI credit-card default data) into one SQLite database and
one silo TOML per party: ``bank`` (label holder), ``bureau`` and ``lender``.
"""

from __future__ import annotations

import io
import json
import socket
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine

from fedsilo.errors import DataError
from fedsilo.silo_node.csv_load import load_csv_into_table

__all__ = [
    "DEMO_PARTIES",
    "DemoSilo",
    "load_csv_into_table",
    "write_consortium",
    "write_demo_consortium",
]

#: party -> (table, label column or None, features); ids are ``customer_id`` everywhere.
DEMO_PARTIES: dict[str, tuple[str, str | None, tuple[str, ...]]] = {
    "bank": ("customers", "default", ("PAY_0", "PAY_2", "PAY_3", "PAY_4", "PAY_5", "PAY_6")),
    "bureau": (
        "credit_files",
        None,
        ("LIMIT_BAL", "SEX", "EDUCATION", "MARRIAGE", "AGE", "BILL_AMT1", "BILL_AMT2", "BILL_AMT3"),
    ),
    "lender": (
        "accounts",
        None,
        (
            "BILL_AMT4",
            "BILL_AMT5",
            "BILL_AMT6",
            "PAY_AMT1",
            "PAY_AMT2",
            "PAY_AMT3",
            "PAY_AMT4",
            "PAY_AMT5",
            "PAY_AMT6",
        ),
    ),
}
DEMO_DATASET = "customers"
#: the bundled CSVs (package data, see ``scripts/make_demo_data.py``).
DEMO_DATA_DIR = Path(__file__).resolve().parent.parent / "data"
DEMO_ID_COLUMN = "customer_id"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _toml_str(value: str) -> str:
    """A TOML basic string (JSON escapes are valid TOML escapes)."""
    return json.dumps(value)


def _toml_list(values: tuple[str, ...] | list[str]) -> str:
    return "[" + ", ".join(_toml_str(v) for v in values) + "]"


@dataclass(frozen=True, kw_only=True)
class DemoSilo:
    """One silo of a demo consortium: the CSV loaded into its SQLite table, and its dataset."""

    csv: Path
    table: str
    id_column: str
    features: tuple[str, ...]
    label: str | None = None
    dataset: str = DEMO_DATASET
    protocols: tuple[str, ...] = ("psi", "secureboost", "lr", "score")
    #: more ``[policy]`` lines (e.g. a lower key-size floor for an insecure test run)
    extra_policy: str = ""
    #: more sections after ``[policy]`` (e.g. a label holder's ``[serving]``)
    extra_sections: str = ""


def _silo_toml(party: str, silo: DemoSilo, port: int, tls: bool) -> str:
    out = io.StringIO()
    out.write(f"# demo silo '{party}' (written by fedsilo.silo_node.demo_data)\n")
    out.write(f'party = {_toml_str(party)}\nlisten = "127.0.0.1:{port}"\n')
    out.write(f'database = "sqlite:///{party}.db"\n\n[tls]\n')
    if tls:
        out.write(
            f'ca = "certs/ca.pem"\ncert = "certs/{party}.pem"\nkey = "certs/{party}.key"\n'
            'coordinator = "coordinator"\n'
        )
    else:
        out.write("insecure_plaintext = true\n")
    out.write(
        f"\n[datasets.{silo.dataset}]\ntable = {_toml_str(silo.table)}\n"
        f"id_column = {_toml_str(silo.id_column)}\nfeatures = {_toml_list(silo.features)}\n"
    )
    if silo.label:
        out.write(f"label = {_toml_str(silo.label)}\n")
    roles = '["active", "passive"]' if silo.label else '["passive"]'
    out.write(
        f"\n[policy]\nprotocols = {_toml_list(silo.protocols)}\nroles = {roles}\n"
        "# the demo shows feature names in importance reports; real silos decide\n"
        "release_feature_names = true\n" + silo.extra_policy + silo.extra_sections
    )
    return out.getvalue()


def write_consortium(workdir: Path, silos: dict[str, DemoSilo], *, tls: bool) -> dict[str, Path]:
    """One SQLite database and one silo TOML per party in ``workdir``; party -> TOML path.

    With ``tls=True`` the configs point at ``certs/ca.pem``, ``certs/<party>.pem`` and
    ``certs/<party>.key`` under ``workdir``, which must exist before a config is loaded.
    Ports are free loopback ports at the time of writing.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    configs = {}
    for party, silo in silos.items():
        db = workdir / f"{party}.db"
        if db.exists():
            raise DataError(f"{db} already exists; use an empty folder for the demo")
        engine = create_engine(f"sqlite:///{db}")
        try:
            load_csv_into_table(engine, silo.table, silo.csv, silo.id_column)
        finally:
            engine.dispose()
        path = workdir / f"{party}.toml"
        path.write_text(_silo_toml(party, silo, _free_port(), tls), encoding="utf-8")
        configs[party] = path
    return configs


def write_demo_consortium(workdir: Path, *, tls: bool) -> dict[str, Path]:
    """The bundled credit consortium (bank, bureau, lender) in ``workdir``: see
    :func:`write_consortium`."""
    silos = {
        party: DemoSilo(
            csv=DEMO_DATA_DIR / f"demo_{party}.csv.gz",
            table=table,
            id_column=DEMO_ID_COLUMN,
            features=features,
            label=label,
            protocols=("psi", "secureboost", "lr", "score", "stats", "woe", "select"),
            # the demo's scorecard (examples/scorecard.toml, docs/scorecard.md) needs these
            extra_policy="release_statistics = true\n"
            + (
                "release_woe_iv = true\nrelease_woe_table = true\n"
                if label
                else "release_woe_counts = true\n"
            ),
        )
        for party, (table, label, features) in DEMO_PARTIES.items()
    }
    return write_consortium(workdir, silos, tls=tls)
