"""A trained three-silo model for online-scoring tests and ``bench/bench_online.py``.

The demo consortium's data (``fedsilo/data/demo_*.csv.gz``: bank = label holder, bureau and
lender = passive, partly overlapping ids) or any CSVs of the same shape. A SecureBoost or
vertical LR model is trained in process with the parties themselves on a sample of the common
ids (explicitly insecure small Paillier keys: the model does not depend on the key size, and
online scoring uses no Paillier), each party's part is stored in its silo's database exactly as
``sgb.save`` / ``lr.save`` write it, and the model is registered at the coordinator.
"""

from __future__ import annotations

import csv
import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import create_engine

from fedsilo.coordinator.store import JobStore
from fedsilo.ml.lr_common import LRConfig
from fedsilo.protocols.lr.local import run_vertical
from fedsilo.protocols.lr.vertical import LabelHolder
from fedsilo.protocols.lr.vertical import PassiveParty as LRPassive
from fedsilo.protocols.secureboost.active import (
    ActiveParty,
    PassiveParty,
    SecureBoostParams,
    run_in_process,
)
from fedsilo.silo_node.store import SiloStore

ROOT = Path(__file__).resolve().parent.parent
DEMO = {p: ROOT / "fedsilo" / "data" / f"demo_{p}.csv.gz" for p in ("bank", "bureau", "lender")}
ROLES = {"bank": "active", "bureau": "passive", "lender": "passive"}
LABEL = "default"
ID = "customer_id"
SMALL_KEYS = 1024


@dataclass
class Table:
    ids: list[str]
    columns: list[str]
    x: np.ndarray
    y: np.ndarray | None = None


def read_table(path: Path, label: str | None = None) -> Table:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    head, body = rows[0], rows[1:]
    cols = [c for c in head[1:] if c != label]
    idx = [head.index(c) for c in cols]
    x = np.array([[float(r[i]) if r[i] != "" else np.nan for i in idx] for r in body])
    y = np.array([float(r[head.index(label)]) for r in body]) if label else None
    return Table([r[0] for r in body], cols, x, y)


def read_consortium(
    paths: dict[str, Path] | None = None,
    roles: dict[str, str] | None = None,
    label: str = LABEL,
) -> dict[str, Table]:
    """Every party's table; the label holder's with its label column apart."""
    paths, roles = paths or DEMO, roles or ROLES
    return {
        p: read_table(path, label if roles[p] == "active" else None) for p, path in paths.items()
    }


def common_sample(tables: dict[str, Table], rows: int, seed: int = 0) -> list[str]:
    common = sorted(set.intersection(*(set(t.ids) for t in tables.values())))
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(common, size=min(rows, len(common)), replace=False).tolist())


def _rows(table: Table, ids: list[str]) -> np.ndarray:
    pos = {i: r for r, i in enumerate(table.ids)}
    return table.x[[pos[i] for i in ids]]


def train_parts(
    kind: str,
    tables: dict[str, Table],
    ids: list[str],
    params: dict[str, Any],
    roles: dict[str, str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Each party's stored payload of a model trained on ``ids`` (every party holds them)."""
    active = next(p for p, r in (roles or ROLES).items() if r == "active")
    passives = sorted(p for p in tables if p != active)
    pos = {i: r for r, i in enumerate(tables[active].ids)}
    assert tables[active].y is not None
    y = tables[active].y[[pos[i] for i in ids]]
    xs = {p: _rows(tables[p], ids) for p in tables}
    if kind == "secureboost":
        sgb = SecureBoostParams.from_dict(
            {**params, "key_bits": SMALL_KEYS, "insecure_min_key_bits": SMALL_KEYS}
        )
        act = ActiveParty(
            active,
            xs[active],
            y,
            params=sgb,
            passives=passives,
            feature_names=tables[active].columns,
        )
        pas = {
            p: PassiveParty(
                p, xs[p], feature_names=tables[p].columns, insecure_min_key_bits=SMALL_KEYS
            )
            for p in passives
        }
        run_in_process(act, pas)
        model = act.model
        out = {
            active: {
                "columns": [f.name for f in model.features if f.party == active],
                "model": model.to_dict(),
                "passive_parties": passives,
                "importance": {},
            }
        }
        for p, party in pas.items():
            out[p] = {"columns": tables[p].columns, "part": party.model_part()}
        return out
    config = LRConfig(**params)
    holder = LabelHolder(
        xs[active],
        y,
        feature_names=tables[active].columns,
        config=config,
        passive_parties=passives,
        party=active,
        key_bits=SMALL_KEYS,
        insecure_min_key_bits=SMALL_KEYS,
    )
    lr_pas = [
        LRPassive(
            xs[p],
            party=p,
            feature_names=tables[p].columns,
            config=config,
            passive_parties=passives,
            insecure_min_key_bits=SMALL_KEYS,
        )
        for p in passives
    ]
    run_vertical(holder, lr_pas)
    out = {}
    for party_obj in [holder, *lr_pas]:
        part = party_obj.model_part()
        out[part.party] = {
            "columns": part.feature_names,
            "part": part.to_dict(),
            "passive_parties": passives,
        }
    return out


def install(
    db_urls: dict[str, str], parts: dict[str, dict[str, Any]], kind: str, part_id: str
) -> None:
    """Store each party's part in its silo's database (tables created if needed)."""
    for party, payload in parts.items():
        engine = create_engine(db_urls[party])
        store = SiloStore(engine)
        store.create_tables()
        store.save_model_part(part_id, kind, payload, replace=True)
        engine.dispose()


def register(
    store: JobStore,
    kind: str,
    part_id: str,
    name: str,
    params: dict[str, Any],
    roles: dict[str, str] | None = None,
) -> str:
    roles = roles or ROLES
    record = {
        "parties": dict(roles),
        "parts": {p: part_id for p in roles},
        "params": params,
        "trained_on": {"job_id": "in-process", "alignment": None, "datasets": {}},
        "metrics": {},
    }
    return store.register_model(name=name, kind=kind, job_id="in-process", record=record).model_id
