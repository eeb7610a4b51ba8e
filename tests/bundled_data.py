"""The data sets the tests read, bundled as gzip CSV in ``tests/data/`` (see its README.md).

Every test reads them through this module, so nothing reads a file outside the checkout. Names
are file stems: ``breast_hetero_guest``, ``default_credit_homo_test``, ...
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).resolve().parent / "data"
_NAME = re.compile(r"[A-Za-z0-9_]+")


def data_file(name: str) -> Path:
    """The bundled ``NAME.csv.gz`` (``load_csv_into_table`` and ``np.loadtxt`` read it as is)."""
    path = DATA_DIR / f"{name}.csv.gz"
    if not _NAME.fullmatch(name) or not path.is_file():
        raise FileNotFoundError(f"no bundled data set {name!r} in {DATA_DIR}")
    return path


def load_csv(name: str) -> np.ndarray:
    """The numeric CSV ``name`` as a float array, header row skipped."""
    return np.loadtxt(data_file(name), delimiter=",", skiprows=1)
