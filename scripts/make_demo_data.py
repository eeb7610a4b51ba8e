"""Build the bundled demo consortium data from the UCI "default of credit card clients" set.

Three parties hold vertical slices of the same 30,000 customers, as three institutions would:

- ``demo_bank.csv.gz``: the label holder: ``default`` and the repayment history PAY_0, PAY_2..6;
- ``demo_bureau.csv.gz``: LIMIT_BAL, SEX, EDUCATION, MARRIAGE, AGE, BILL_AMT1..3;
- ``demo_lender.csv.gz``: BILL_AMT4..6, PAY_AMT1..6.

Why the overlap is partial and the rows shuffled: PSI has something to do only if each party
lacks some customers (a different random 5-7 % each, so the bureau and the lender each know
~1.7k customers the bank does not) and if row order says nothing about identity. Customer ids are
strings (``C0000001``), as real keys usually are.

Seeded and byte-for-byte reproducible (gzip mtime 0)::

    python scripts/make_demo_data.py [--source tests/data/UCI_Credit_Card.csv.gz]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
#: bundled with its source, licence and checksum (tests/data/README.md); plain CSV works too.
DEFAULT_SOURCE = ROOT / "tests" / "data" / "UCI_Credit_Card.csv.gz"
OUT = ROOT / "fedsilo" / "data"
SEED = 20240601
LABEL_SOURCE = "default.payment.next.month"

#: party -> (share of all customers it lacks, its columns as (output name, source name)).
PARTIES: dict[str, tuple[float, list[tuple[str, str]]]] = {
    "bank": (
        0.06,
        [("default", LABEL_SOURCE)]
        + [(c, c) for c in ("PAY_0", "PAY_2", "PAY_3", "PAY_4", "PAY_5", "PAY_6")],
    ),
    "bureau": (
        0.05,
        [
            (c, c)
            for c in (
                "LIMIT_BAL",
                "SEX",
                "EDUCATION",
                "MARRIAGE",
                "AGE",
                "BILL_AMT1",
                "BILL_AMT2",
                "BILL_AMT3",
            )
        ],
    ),
    "lender": (
        0.07,
        [
            (c, c)
            for c in (
                "BILL_AMT4",
                "BILL_AMT5",
                "BILL_AMT6",
                "PAY_AMT1",
                "PAY_AMT2",
                "PAY_AMT3",
                "PAY_AMT4",
                "PAY_AMT5",
                "PAY_AMT6",
            )
        ],
    ),
}


def read_source(path: Path) -> list[dict[str, str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def clean(value: str) -> str:
    """Write ``20000.0`` as ``20000`` so integer columns load as integers."""
    number = float(value)
    return str(int(number)) if number.is_integer() else value


def party_rows(
    rows: list[dict[str, str]],
    share_missing: float,
    columns: list[tuple[str, str]],
    rng: np.random.Generator,
) -> list[list[str]]:
    keep = rng.permutation(len(rows))[int(round(share_missing * len(rows))) :]
    rng.shuffle(keep)
    return [
        [f"C{int(rows[i]['ID']):07d}"] + [clean(rows[i][src]) for _, src in columns] for i in keep
    ]


def write_gzip_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    with path.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        gz.write(buf.getvalue().encode("utf-8"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    rows = read_source(args.source)
    rng = np.random.default_rng(SEED)
    args.out.mkdir(parents=True, exist_ok=True)
    for party, (share, columns) in PARTIES.items():
        data = party_rows(rows, share, columns, rng)
        path = args.out / f"demo_{party}.csv.gz"
        write_gzip_csv(path, ["customer_id"] + [name for name, _ in columns], data)
        print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {len(data)} rows")


if __name__ == "__main__":
    main()
