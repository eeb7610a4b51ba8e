"""The one sigmoid every protocol uses: finite, warning-free and exact in both tails."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from fedsilo.crypto import ckks
from fedsilo.errors import PolicyError
from fedsilo.ml import lr_common, tree
from fedsilo.ml.mathfn import sigmoid

pytestmark = pytest.mark.unit


def test_sigmoid_is_stable_at_plus_and_minus_1000() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the old 1/(1+exp(-z)) warned "overflow in exp" here
        p = sigmoid(np.array([-1000.0, -40.0, 0.0, 40.0, 1000.0]))
    assert np.all(np.isfinite(p))
    assert p[0] == 0.0 and p[-1] == 1.0 and p[2] == 0.5
    assert p[1] == pytest.approx(np.exp(-40.0), rel=1e-12)  # the small tail is not rounded to 0


def test_sigmoid_matches_the_textbook_form_where_that_is_safe() -> None:
    z = np.linspace(-30.0, 30.0, 601)
    np.testing.assert_allclose(sigmoid(z), 1.0 / (1.0 + np.exp(-z)), rtol=1e-14, atol=0)
    np.testing.assert_allclose(sigmoid(z) + sigmoid(-z), 1.0, rtol=0, atol=1e-15)


def test_one_definition_behind_every_name() -> None:
    assert tree.sigmoid is sigmoid and lr_common.sigmoid is sigmoid


@pytest.mark.parametrize("n_silos", [0, 1, 2])
def test_secure_sums_need_three_silos(n_silos: int) -> None:
    with pytest.raises(PolicyError, match=f"at least 3 silos, got {n_silos}: with two"):
        ckks.check_silo_count(n_silos, protocol="a sum", summed="vector")
    ckks.check_silo_count(3, protocol="a sum", summed="vector")
