"""The card-fraud simulator (``fedsilo.fraudsim``): determinism, the handbook's fraud rates, the
feature windows against a plain pandas rolling reference, the terminal-risk delay, the split."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pandas as pd
import pytest

from fedsilo.errors import ConfigError
from fedsilo.fraudsim import (
    ACQUIRER_FEATURES,
    ISSUER_FEATURES,
    ISSUER_LABEL,
    TX_ID,
    SimConfig,
    customer_windows,
    simulate,
    split_parties,
    terminal_windows,
    write_party_csvs,
)
from fedsilo.fraudsim.frauds import daily_counts
from fedsilo.fraudsim.transactions import DAY_SECONDS

pytestmark = pytest.mark.unit

SMALL = SimConfig(seed=7, n_days=60, scale=0.02)  # ~11k transactions, 100 customers


@pytest.fixture(scope="module")
def small():
    return simulate(SMALL)


@pytest.fixture(scope="module")
def handbook():
    """The handbook's world (5,000 customers, 10,000 terminals) over 80 days: ~780k rows."""
    return simulate(SimConfig(seed=1, n_days=80))


# --- determinism -----------------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path) -> None:
    def files(config: SimConfig, name: str) -> dict[str, bytes]:
        paths = write_party_csvs(split_parties(simulate(config)), tmp_path / name, gz=True)
        return {p.name: p.read_bytes() for p in paths}

    first, again = files(SMALL, "a"), files(SMALL, "b")
    assert sorted(first) == ["acquirer.csv.gz", "issuer.csv.gz"]
    assert first == again
    other = files(dataclasses.replace(SMALL, seed=8), "c")
    assert other["issuer.csv.gz"] != first["issuer.csv.gz"]


def test_sized_by_rows() -> None:
    handbook = SimConfig.for_rows(1_000_000)
    assert (handbook.n_days, handbook.scale) == (104, 1.0)  # the handbook's world exactly
    small = SimConfig.for_rows(20_000)
    assert small.n_days == 56 and small.n_customers == 186
    assert abs(len(simulate(small)) - 20_000) < 2_000
    with pytest.raises(ConfigError, match="at least 1000 rows"):
        SimConfig.for_rows(10)


# --- the handbook's design -------------------------------------------------------------------


def test_profiles_and_transactions_follow_the_design(small) -> None:
    c, tx = small.customers, small.transactions
    assert (5 <= c.mean_amount).all() and (c.mean_amount <= 100).all()
    assert np.allclose(c.std_amount, c.mean_amount / 2)
    assert (0 <= c.mean_tx_per_day).all() and (c.mean_tx_per_day <= 4).all()
    assert (np.diff(tx.seconds) >= 0).all()  # time order
    assert (tx.seconds % DAY_SECONDS > 0).all() and (tx.day < SMALL.n_days).all()
    genuine = tx.scenario != 3
    assert (tx.cents[genuine] >= 0).all()
    # every transaction is at a terminal within the customer's radius
    dx = c.x[tx.customer] - small.terminals.x[tx.terminal]
    dy = c.y[tx.customer] - small.terminals.y[tx.terminal]
    assert (np.hypot(dx, dy) < SMALL.radius).all()
    # a customer's number of transactions follows its mean per day (Poisson, times in the day)
    per_customer = np.bincount(tx.customer, minlength=c.x.size) / SMALL.n_days
    assert np.corrcoef(per_customer, c.mean_tx_per_day)[0, 1] > 0.95


def test_daily_counts_are_exact_at_the_handbook_rate() -> None:
    assert daily_counts(2.0, 5) == [2, 2, 2, 2, 2]
    assert daily_counts(3.0, 4) == [3, 3, 3, 3]
    assert sum(daily_counts(0.06, 100)) == 6


def test_fraud_rate_and_scenarios_near_the_handbook(handbook) -> None:
    tx = handbook.transactions
    share = np.bincount(tx.scenario, minlength=4) / len(tx)
    # the handbook's 1.75M transactions: 0.84 % fraud, most from compromised terminals
    assert 0.0075 < handbook.fraud_rate < 0.0095
    assert 0.0003 < share[1] < 0.0010
    assert 0.0040 < share[2] < 0.0060
    assert 0.0018 < share[3] < 0.0032
    assert (tx.fraud == (tx.scenario > 0)).all()
    # scenario 1: amount above 220; scenario 3 multiplied by five
    assert (tx.cents[tx.scenario == 1] > 22_000).all()
    assert (tx.cents[tx.scenario == 3] % 5 == 0).all()
    # scenario 2: at most 2 terminals a day, each fraudulent for at most 28 days
    s2 = tx.scenario == 2
    assert len(np.unique(tx.terminal[s2])) <= 2 * handbook.config.n_days
    days = pd.DataFrame({"t": tx.terminal[s2], "d": tx.day[s2]}).groupby("t")["d"]
    assert ((days.max() - days.min()) < 2 * 28).all()
    # scenario 3: at most 3 customers a day; among their transactions in the window 1 in 3
    assert len(np.unique(tx.customer[tx.scenario == 3])) <= 3 * handbook.config.n_days


def test_compromised_terminal_makes_every_later_transaction_fraud(handbook) -> None:
    tx = handbook.transactions
    s2 = np.flatnonzero(tx.scenario == 2)
    terminal, day = tx.terminal[s2[0]], tx.day[s2[0]]
    same = (tx.terminal == terminal) & (tx.day >= day) & (tx.day < day + 28)
    assert tx.fraud[same].all()


# --- features against a plain pandas reference ------------------------------------------------


def _frame(sim) -> pd.DataFrame:
    tx = sim.transactions
    return pd.DataFrame(
        {
            "dt": pd.to_datetime(tx.seconds, unit="s", origin=pd.Timestamp("2018-04-01")),
            "customer": tx.customer,
            "terminal": tx.terminal,
            "cents": tx.cents.astype(np.float64),
            "fraud": tx.fraud.astype(np.float64),
        }
    )


def test_time_flags_match_pandas(small) -> None:
    df = _frame(small)
    assert (small.features["tx_during_weekend"] == (df.dt.dt.day_of_week >= 5)).all()
    assert (small.features["tx_during_night"] == (df.dt.dt.hour <= 6)).all()
    assert df.dt.iloc[0].weekday() == 6  # 2018-04-01 is a Sunday


def test_customer_windows_equal_a_pandas_rolling_reference(small) -> None:
    df = _frame(small)
    for w in (1, 7, 30):
        count = pd.Series(np.nan, index=df.index)
        total = pd.Series(np.nan, index=df.index)
        for _, group in df.groupby("customer"):
            rolling = group.set_index("dt")["cents"].rolling(f"{w}D")
            count[group.index] = rolling.count().to_numpy()
            total[group.index] = rolling.sum().to_numpy()
        assert np.array_equal(small.features[f"customer_nb_tx_{w}day"], count.to_numpy())
        expected = total.to_numpy() / count.to_numpy() / 100.0
        assert np.array_equal(small.features[f"customer_avg_amount_{w}day"], expected)


def test_terminal_windows_equal_the_handbook_delayed_reference(small) -> None:
    df = _frame(small)
    for w in (1, 7, 30):
        n_tx = pd.Series(np.nan, index=df.index)
        risk = pd.Series(np.nan, index=df.index)
        for _, group in df.groupby("terminal"):
            fraud = group.set_index("dt")["fraud"]
            delay_tx, delay_fr = fraud.rolling("7D").count(), fraud.rolling("7D").sum()
            all_tx, all_fr = fraud.rolling(f"{7 + w}D").count(), fraud.rolling(f"{7 + w}D").sum()
            nb = (all_tx - delay_tx).to_numpy()
            fr = (all_fr - delay_fr).to_numpy()
            n_tx[group.index] = nb
            risk[group.index] = np.divide(fr, nb, out=np.zeros(nb.size), where=nb > 0)
        assert np.array_equal(small.features[f"terminal_nb_tx_{w}day"], n_tx.to_numpy())
        assert np.array_equal(small.features[f"terminal_risk_{w}day"], risk.to_numpy())
    assert small.features["terminal_risk_30day"].max() > 0  # the windows do see frauds


def test_terminal_risk_uses_no_label_of_the_last_seven_days(small) -> None:
    """Leakage: flipping every label of the 7 days before a transaction (and its own) leaves
    its terminal features unchanged; flipping one older label inside the window changes them."""
    tx = small.transactions
    base = terminal_windows(tx)
    rng = np.random.default_rng(0)
    for i in rng.choice(len(tx), 200, replace=False):
        recent = (
            (tx.terminal == tx.terminal[i])
            & (tx.seconds > tx.seconds[i] - 7 * DAY_SECONDS)
            & (np.arange(len(tx)) <= i + 50)  # and later ones, however many
        )
        flipped = dataclasses.replace(tx, fraud=np.where(recent, 1 - tx.fraud, tx.fraud))
        flipped.fraud = flipped.fraud.astype(np.int8)
        moved = terminal_windows(flipped)
        for name, values in base.items():
            assert moved[name][i] == values[i], (name, i)
    # the converse: a label 8 days old is seen by the 7- and 30-day windows
    i = int(np.flatnonzero(base["terminal_nb_tx_7day"] > 0)[0])
    old = np.flatnonzero(
        (tx.terminal == tx.terminal[i])
        & (tx.seconds <= tx.seconds[i] - 7 * DAY_SECONDS)
        & (tx.seconds > tx.seconds[i] - 14 * DAY_SECONDS)
    )[0]
    fraud = tx.fraud.copy()
    fraud[old] = 1 - fraud[old]
    moved = terminal_windows(dataclasses.replace(tx, fraud=fraud))
    assert moved["terminal_risk_7day"][i] != base["terminal_risk_7day"][i]


def test_customer_windows_include_the_transaction_itself(small) -> None:
    feats = customer_windows(small.transactions)
    assert (feats["customer_nb_tx_1day"] >= 1).all()
    first = np.unique(small.transactions.customer, return_index=True)[1]
    assert (feats["customer_nb_tx_30day"][first] == 1).all()
    assert np.array_equal(
        feats["customer_avg_amount_30day"][first], small.transactions.cents[first] / 1 / 100.0
    )


# --- the vertical split ----------------------------------------------------------------------


def test_split_issuer_holds_the_label_acquirer_none(small, tmp_path) -> None:
    parties = split_parties(small)
    issuer, acquirer = parties["issuer"], parties["acquirer"]
    assert issuer.label == ISSUER_LABEL and acquirer.label is None
    assert list(issuer.columns) == [*ISSUER_FEATURES, ISSUER_LABEL]
    assert list(acquirer.columns) == list(ACQUIRER_FEATURES)
    assert np.array_equal(issuer.ids, acquirer.ids) and len(np.unique(issuer.ids)) == len(small)
    paths = {p.name: p for p in write_party_csvs(parties, tmp_path)}
    iss = pd.read_csv(paths["issuer.csv"], dtype={TX_ID: str})
    acq = pd.read_csv(paths["acquirer.csv"], dtype={TX_ID: str})
    assert ISSUER_LABEL in iss.columns and ISSUER_LABEL not in acq.columns
    assert not any("fraud" in c or "risk" in c for c in iss.columns if c != ISSUER_LABEL)
    assert not any(c.startswith(("customer_", "tx_")) for c in acq.columns if c != TX_ID)
    assert list(iss[TX_ID]) == list(acq[TX_ID])
    assert iss[ISSUER_LABEL].sum() == small.transactions.fraud.sum()
    # the rows join back to the simulation by id, values exact
    by_id = pd.Series(np.arange(len(small)), index=small.tx_id)
    rows = by_id[acq[TX_ID]].to_numpy()
    assert np.array_equal(acq["terminal_risk_30day"], small.features["terminal_risk_30day"][rows])
    assert np.array_equal(iss["tx_amount"], small.features["tx_amount"][rows])


def test_ids_are_opaque(small) -> None:
    ids = split_parties(small)["issuer"].ids
    assert all(re.fullmatch(r"[0-9a-f]{20}", i) for i in ids[:1000])
    assert (ids[:-1] < ids[1:]).all()  # the files are in id order
    # neither the id nor the files' (id) order follows time
    time_rank = np.argsort(np.argsort(small.transactions.seconds))
    file_order = np.argsort(np.argsort(small.tx_id))
    assert abs(np.corrcoef(time_rank, file_order)[0, 1]) < 0.05


def test_bad_sizes_are_one_clear_line() -> None:
    with pytest.raises(ConfigError, match="n_days"):
        SimConfig(n_days=0)
    with pytest.raises(ConfigError, match="scale"):
        SimConfig(scale=0.0)
