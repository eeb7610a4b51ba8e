"""The label holder's own model: the same kind of model on its features alone.

Evaluation reports it beside the federated model; the difference is what federation is worth
(the "federation lift"). It runs entirely inside the label holder's silo with the reference
libraries (xgboost, scikit-learn), so it is also an independent sanity check of our own code.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["baseline_scores"]


def _xgboost(
    params: dict[str, Any], X: np.ndarray, y: np.ndarray, X_test: np.ndarray
) -> np.ndarray:
    import xgboost as xgb

    model = xgb.XGBClassifier(
        tree_method="hist",
        n_estimators=int(params.get("n_estimators", 30)),
        max_depth=int(params.get("max_depth", 3)),
        learning_rate=float(params.get("learning_rate", 0.3)),
        reg_lambda=float(params.get("reg_lambda", 1.0)),
        gamma=float(params.get("gamma", 0.0)),
        min_child_weight=float(params.get("min_child_weight", 1.0)),
        max_bin=int(params.get("max_bin", 32)),
        random_state=int(params.get("seed", 0)),
        n_jobs=1,
    )
    model.fit(X, y)
    return np.asarray(model.predict_proba(X_test)[:, 1])


def _logistic(
    params: dict[str, Any], X: np.ndarray, y: np.ndarray, X_test: np.ndarray
) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    c = float(params.get("C", 1.0 / max(float(params.get("l2", 1e-4)) * len(y), 1e-12)))
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=1000))
    model.fit(np.nan_to_num(X), y)
    return np.asarray(model.predict_proba(np.nan_to_num(X_test))[:, 1])


def baseline_scores(
    kind: str, params: dict[str, Any], X: np.ndarray, y: np.ndarray, X_test: np.ndarray
) -> np.ndarray | None:
    """Scores of the label-holder-only model on ``X_test``; None if it has no features."""
    if X.shape[1] == 0:
        return None
    fit = _logistic if kind in ("lr", "hlr") else _xgboost
    return fit(params, X, y, X_test)
