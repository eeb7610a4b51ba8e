"""The ``stats`` protocol in-process: statistics equal the pooled computation, small groups are
withheld, and the cross-silo correlation matrix (Paillier) matches numpy on the pooled columns
within 1e-6 on the bundled default-credit data (three silos)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from bundled_data import load_csv

from fedsilo.errors import CryptoError, ProtocolError
from fedsilo.ml.relay import Relay
from fedsilo.protocols.stats.correlation import Encrypter, cross_products
from fedsilo.protocols.stats.local import run_in_process
from fedsilo.protocols.stats.party import StatsParams, StatsParty
from fedsilo.protocols.stats.profile import profile_column, standardise, vif

ROOT = Path(__file__).resolve().parents[3]
#: small keys keep the in-process tests fast; the e2e test runs the 2048-bit default
BITS = 1024
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def _params(**kw: object) -> StatsParams:
    base = dict(
        quantiles=QUANTILES,
        correlation=True,
        key_bits=BITS,
        min_rows=10,
        release_names=True,
        min_key_bits=BITS,
    )
    return StatsParams(**{**base, **kw})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def credit() -> tuple[np.ndarray, np.ndarray]:
    guest = load_csv("default_credit_hetero_guest")[:3000]
    host = load_csv("default_credit_hetero_host")[:3000]
    assert (guest[:, 0] == host[:, 0]).all()
    return guest[:, 2:], host[:, 1:]


def _silos(credit: tuple[np.ndarray, np.ndarray], **kw: object) -> dict[str, StatsParty]:
    guest, host = credit
    g = [f"g{i}" for i in range(13)]
    return {
        "bank": StatsParty("bank", guest, g, _params(**kw)),
        "bureau": StatsParty("bureau", host[:, :5], [f"b{i}" for i in range(5)], _params(**kw)),
        "lender": StatsParty("lender", host[:, 5:], [f"l{i}" for i in range(5)], _params(**kw)),
    }


def test_column_statistics_equal_the_pooled_computation(
    credit: tuple[np.ndarray, np.ndarray],
) -> None:
    col = credit[0][:, 3].copy()
    col[::7] = np.nan  # missing values
    got = profile_column(col, QUANTILES, min_rows=10)
    present = col[~np.isnan(col)]
    assert got["rows"] == col.size and got["count"] == present.size
    assert got["missing_rate"] == np.isnan(col).mean()
    assert got["mean"] == present.mean() and got["std"] == present.std()
    assert got["distinct"] == np.unique(present).size
    ordered = np.sort(present)
    for q in QUANTILES:
        value = got["quantiles"][f"{q:g}"]
        assert value == np.quantile(present, q, method="inverted_cdf")
        # within one rank of numpy's default (linear) quantile
        rank = q * (present.size - 1)
        lo, hi = (
            ordered[int(np.floor(rank))],
            ordered[min(int(np.ceil(rank)) + 1, present.size - 1)],
        )
        assert lo <= value <= hi
    assert got["withheld"] == []


def test_statistics_below_the_owners_minimum_are_withheld() -> None:
    values = np.arange(100, dtype=np.float64)
    got = profile_column(values, (0.05, 0.5, 0.95), min_rows=10)
    assert got["quantiles"] == {"0.05": None, "0.5": 49.0, "0.95": None}  # 5 rows in each tail
    assert got["withheld"] == ["quantile 0.05", "quantile 0.95"]
    few = profile_column(values[:8], (0.5,), min_rows=10)
    assert few["count"] is None and few["mean"] is None and few["std"] is None
    assert few["distinct"] is None and few["quantiles"] == {"0.5": None}
    assert set(few["withheld"]) >= {"count", "missing_rate", "mean", "std", "distinct"}
    sparse = values.copy()
    sparse[5:] = np.nan  # 100 rows, 5 present: the count is released, the mean is not
    got = profile_column(sparse, (0.5,), min_rows=10)
    assert got["count"] == 5 and got["mean"] is None


def test_the_cross_silo_matrix_matches_numpy_on_the_pooled_columns(
    credit: tuple[np.ndarray, np.ndarray],
) -> None:
    relay = Relay()
    result = run_in_process(_silos(credit), relay=relay)
    pooled = np.hstack(credit)
    expected = np.corrcoef(pooled.T)
    labels = result["correlation"]["columns"]
    assert labels == (
        [f"bank.g{i}" for i in range(13)]
        + [f"bureau.b{i}" for i in range(5)]
        + [f"lender.l{i}" for i in range(5)]
    )
    got = np.asarray(result["correlation"]["matrix"], dtype=np.float64)
    assert np.abs(got - expected).max() < 1e-6
    vifs = np.array([result["vif"][label] for label in labels])
    assert np.allclose(vifs, np.diag(np.linalg.inv(expected)), rtol=1e-4)
    assert result["columns"]["bureau.b0"]["mean"] == credit[1][:, 0].mean()
    assert relay.bytes_relayed > 3000 * BITS // 4  # one ciphertext (2 x 1024 bits) per row


def test_a_silo_that_keeps_names_is_labelled_by_position(
    credit: tuple[np.ndarray, np.ndarray],
) -> None:
    silos = _silos(credit)
    silos["lender"] = StatsParty(
        "lender", credit[1][:, 5:], [f"l{i}" for i in range(5)], _params(release_names=False)
    )
    result = run_in_process(silos, correlate=False)
    assert "lender.#0" in result["columns"] and "lender.l0" not in result["columns"]
    assert result["vif"] is None  # no cross-silo blocks without the encrypted round


def test_columns_with_missing_values_or_constant_are_left_out(
    credit: tuple[np.ndarray, np.ndarray],
) -> None:
    x = credit[1][:, :3].copy()
    x[0, 1] = np.nan
    x[:, 2] = 4.0
    std = standardise(x, ["a", "b", "c"])
    assert std.names == ["a"]
    assert std.excluded == {"b": "has missing values", "c": "is constant"}


def test_vif_is_the_diagonal_of_the_inverse() -> None:
    r = np.array([[1.0, 0.5], [0.5, 1.0]])
    assert np.allclose(vif(r), [1 / 0.75, 1 / 0.75])
    assert np.isinf(vif(np.ones((2, 2)))).all()


def test_the_evaluator_refuses_what_does_not_fit(credit: tuple[np.ndarray, np.ndarray]) -> None:
    a = standardise(credit[0][:200], [f"g{i}" for i in range(13)])
    b = standardise(credit[1][:150], [f"b{i}" for i in range(10)])
    msg = Encrypter(a, key_bits=BITS, insecure_min_bits=BITS).message()
    with pytest.raises(ProtocolError, match="200 rows, this silo holds 150"):
        cross_products(b, msg, insecure_min_bits=BITS)
    with pytest.raises((CryptoError, ProtocolError)):
        cross_products(standardise(credit[1][:200], [f"b{i}" for i in range(10)]), msg)


def test_every_stats_message_kind_is_documented() -> None:
    page = (ROOT / "docs" / "leakage.md").read_text()
    for kind in ("stats.encrypted_columns", "stats.cross_products"):
        assert re.search(rf"`{re.escape(kind)}`", page), kind
