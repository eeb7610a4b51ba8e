"""The bundled credit demo data (``fedsilo/data/demo_*.csv.gz``) as a three-silo test consortium
(bank = label holder, bureau, lender; ids ``customer_id``) and as pooled columns for parity."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
from support import Consortium, SiloSpec

from fedsilo.silo_node.demo_data import DEMO_DATA_DIR, DEMO_PARTIES

ROLES = {"bank": "active", "bureau": "passive", "lender": "passive"}


def demo_table(party: str) -> dict[str, list[float]]:
    """``{customer_id: feature values}`` of one demo silo, in its feature order."""
    features = DEMO_PARTIES[party][2]
    with gzip.open(DEMO_DATA_DIR / f"demo_{party}.csv.gz", "rt", newline="") as f:
        return {row["customer_id"]: [float(row[c]) for c in features] for row in csv.DictReader(f)}


def pooled(ids: list[str]) -> dict[str, np.ndarray]:
    """Each silo's columns over ``ids`` (aligned rows, in alignment order)."""
    tables = {p: demo_table(p) for p in ROLES}
    return {p: np.array([tables[p][i] for i in ids]) for p in ROLES}


def consortium(
    root: Path, policies: dict[str, str], extra: dict[str, dict[str, Path]] | None = None
) -> Consortium:
    """The three demo silos, started, each with the extra ``[policy]`` lines given for it (and
    the extra datasets ``{party: {name: csv}}``, declared with the same columns)."""
    c = Consortium(root, tls=True)
    for party in ROLES:
        _, label, features = DEMO_PARTIES[party]
        c.add_silo(
            SiloSpec(
                party,
                DEMO_DATA_DIR / f"demo_{party}.csv.gz",
                list(features),
                label=label,
                id_column="customer_id",
                policy=policies.get(party, ""),
                extra=(extra or {}).get(party, {}),
            )
        )
    c.start_all()
    return c


def write_demo_subset(path: Path, party: str, keep: int, shift: dict[str, float]) -> Path:
    """Every ``keep``-th row of a demo silo's CSV (gzip), with ``shift`` added to columns."""
    with gzip.open(DEMO_DATA_DIR / f"demo_{party}.csv.gz", "rt", newline="") as f:
        rows = list(csv.DictReader(f))
    with gzip.open(path, "wt", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows[::keep]:
            for col, delta in shift.items():
                row[col] = str(int(row[col]) + int(delta))
            writer.writerow(row)
    return path
