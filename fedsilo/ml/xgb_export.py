"""Export a whole fedsilo tree model as an xgboost JSON model (``Booster(model_file=...)``).

The document follows xgboost's JSON model schema (``doc/model.schema`` in xgboost; the layout
xgboost 3.x writes with ``save_model("m.json")``): a ``gbtree`` booster of ``binary:logistic``
trees, one tree per iteration. A fedsilo :class:`~fedsilo.ml.tree.Tree` numbers its nodes the way
xgboost does (level by level, children after parents), so node arrays map one to one:

* split node: ``split_indices`` = feature, ``split_conditions`` = float32 threshold (left iff
  ``x < threshold``), ``default_left`` = where missing values go;
* leaf: ``split_conditions`` = ``base_weights`` = the leaf value (learning rate applied);
* ``base_score`` is the probability ``sigmoid(base_margin)``: xgboost 3.x stores binary:logistic
  intercepts in probability space.

Why statistics are stripped by default: ``sum_hessian`` (the hessian sum of the rows in a node),
``loss_changes`` (split gains) and the ``base_weights`` of inner nodes are functions of the
training rows' gradients in every node; with the tree structure they narrow down how many rows,
and which labels, fell in a region of feature space. Prediction needs none of them, so they are
written as zeros unless ``include_statistics=True``. (xgboost's ``gain``/``cover`` importance of
a stripped export is then zero; :meth:`~fedsilo.ml.ensemble.TreeEnsemble.get_score` keeps them.)

xgboost casts inputs to float32 and so do fedsilo's bins (:mod:`fedsilo.ml.binning`); predictions
agree up to float32 summation of leaf values (~1e-7). A ``missing`` value other than NaN is not
part of an xgboost model: pass ``missing=`` to the ``DMatrix`` as with any xgboost model.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from fedsilo.ml.ensemble import TreeEnsemble
from fedsilo.ml.tree import Tree

__all__ = ["XGBOOST_VERSION", "to_xgboost_dict", "to_xgboost_json"]

#: the xgboost release whose JSON layout this writes (and which tests load it)
XGBOOST_VERSION = (3, 2, 0)
#: xgboost's marker for "no parent" (the root's parent), ``std::numeric_limits<int32_t>::max()``
_NO_PARENT = 2**31 - 1


def _f32(value: float) -> float:
    """A float32 value as the Python float that prints it exactly (what xgboost stores)."""
    return float(np.float32(value))


def _tree_dict(model: TreeEnsemble, index: int, include_statistics: bool) -> dict[str, Any]:
    tree: Tree = model.trees[index]
    n = tree.n_nodes
    inner = [not tree.is_leaf(i) for i in range(n)]
    conditions = [
        _f32(model.threshold(index, i)) if inner[i] else _f32(tree.value[i]) for i in range(n)
    ]
    keep = include_statistics
    return {
        "base_weights": [_f32(tree.value[i]) if keep or not inner[i] else 0.0 for i in range(n)],
        "categories": [],
        "categories_nodes": [],
        "categories_segments": [],
        "categories_sizes": [],
        "default_left": [int(bool(tree.default_left[i]) and inner[i]) for i in range(n)],
        "id": index,
        "left_children": [int(c) for c in tree.left],
        "loss_changes": [_f32(tree.gain[i]) if keep else 0.0 for i in range(n)],
        "parents": [_NO_PARENT if p < 0 else int(p) for p in tree.parent],
        "right_children": [int(c) for c in tree.right],
        "split_conditions": conditions,
        "split_indices": [int(tree.feature[i]) if inner[i] else 0 for i in range(n)],
        "split_type": [0] * n,
        "sum_hessian": [_f32(tree.cover[i]) if keep else 0.0 for i in range(n)],
        "tree_param": {
            "num_deleted": "0",
            "num_feature": str(model.n_features),
            "num_nodes": str(n),
            "size_leaf_vector": "1",
        },
    }


def to_xgboost_dict(
    model: TreeEnsemble, *, include_statistics: bool = False, feature_names: bool = True
) -> dict[str, Any]:
    """The xgboost JSON model document of ``model`` as a dict (see the module docstring).

    ``feature_names``: write the model's column names, so xgboost refuses data whose columns
    are named differently (a ``DMatrix`` must then carry the same ``feature_names``).
    """
    n_trees = len(model.trees)
    names = model.feature_names if feature_names else []
    base_score = 1.0 / (1.0 + math.exp(-model.base_margin))
    return {
        "learner": {
            "attributes": {},
            "feature_names": names,
            "feature_types": ["float"] * len(names),
            "gradient_booster": {
                "model": {
                    "cats": {"enc": [], "feature_segments": [], "sorted_idx": []},
                    "gbtree_model_param": {"num_parallel_tree": "1", "num_trees": str(n_trees)},
                    "iteration_indptr": list(range(n_trees + 1)),
                    "tree_info": [0] * n_trees,
                    "trees": [_tree_dict(model, t, include_statistics) for t in range(n_trees)],
                },
                "name": "gbtree",
            },
            "learner_model_param": {
                "base_score": f"[{np.float32(base_score):.8E}]",
                "boost_from_average": "1",
                "num_class": "0",
                "num_feature": str(model.n_features),
                "num_target": "1",
            },
            "objective": {"name": "binary:logistic", "reg_loss_param": {"scale_pos_weight": "1"}},
        },
        "version": list(XGBOOST_VERSION),
    }


def to_xgboost_json(
    model: TreeEnsemble, *, include_statistics: bool = False, feature_names: bool = True
) -> str:
    """The xgboost JSON model text; load it with ``xgboost.Booster(model_file=path)``."""
    doc = to_xgboost_dict(model, include_statistics=include_statistics, feature_names=feature_names)
    return json.dumps(doc, allow_nan=False)
