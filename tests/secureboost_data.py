"""Data helpers shared by the tree and SecureBoost tests (vertical splits from tests/data)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from bundled_data import load_csv
from sklearn.model_selection import train_test_split


@dataclass
class Vertical:
    """Guest (label holder) and host columns of one vertical data set, aligned by row."""

    y: np.ndarray
    guest: np.ndarray
    host: np.ndarray
    train: np.ndarray
    test: np.ndarray

    @property
    def joined(self) -> np.ndarray:
        return np.hstack([self.guest, self.host])


def load_vertical(name: str, rows: int | None = None) -> Vertical:
    """``name`` is ``breast`` or ``default_credit``; stratified 80/20 split with seed 42."""
    guest, host = load_csv(f"{name}_hetero_guest"), load_csv(f"{name}_hetero_host")
    assert np.array_equal(guest[:, 0], host[:, 0])
    if rows is not None:
        guest, host = guest[:rows], host[:rows]
    y = guest[:, 1]
    train, test = train_test_split(np.arange(len(y)), test_size=0.2, stratify=y, random_state=42)
    return Vertical(y=y, guest=guest[:, 2:], host=host[:, 1:], train=train, test=test)


class _Whole:
    """A SecureBoost model whose thresholds are all known, as ``to_xgboost_dict`` reads it."""

    def __init__(self, model, thresholds) -> None:
        self.trees, self.base_margin = model.trees, model.base_margin
        self.n_features = len(model.features)
        self.feature_names = [f"f{i}" for i in range(self.n_features)]
        self._thresholds = thresholds

    def threshold(self, tree: int, node: int) -> float:
        return self._thresholds[(tree, node)][1]


def xgboost_booster(model, thresholds=None):
    """``model`` as an xgboost Booster with its covers (for ``pred_contribs``). ``thresholds``:
    ``{(tree, node): (feature, threshold, default_left)}`` of every split; default: the model's
    own split table (a centralized model holds them all)."""
    import json

    import xgboost as xgb

    from fedsilo.ml.xgb_export import to_xgboost_dict

    whole = _Whole(model, thresholds or model.own_splits.entries)
    doc = to_xgboost_dict(whole, include_statistics=True, feature_names=False)
    return xgb.Booster(model_file=bytearray(json.dumps(doc).encode()))
