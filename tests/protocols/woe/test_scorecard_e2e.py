"""The credit scorecard end to end over real gRPC with mTLS on the bundled demo data:
psi -> split -> stats -> woe -> select (IV and VIF) -> lr (scorecard) -> evaluate -> score;
the columns the VIF criterion dropped (decided from the stats step's released matrix, checked
against the pooled computation) are not used by the scorecard; parity of the scorecard with
scikit-learn's logistic regression on the pooled WOE columns; what each silo revealed."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sqlalchemy import create_engine, text
from support import Consortium, SiloSpec

from fedsilo.coordinator.orchestrator import run_job
from fedsilo.ml.lr_common import sklearn_c
from fedsilo.ml.woe import Characteristic, woe_matrix
from fedsilo.silo_node.demo_data import DEMO_DATA_DIR, DEMO_PARTIES

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# the bank does not release its column names: the stats step labels its columns #i
ACTIVE_POLICY = "release_woe_iv = true\nrelease_woe_table = true\nrelease_statistics = true\n"
PASSIVE_POLICY = (
    "release_woe_counts = true\nrelease_feature_names = true\nrelease_statistics = true\n"
)
#: the example job's steps (examples/scorecard.toml), run here over the test consortium
EXAMPLE = tomllib.loads(
    (Path(__file__).resolve().parents[3] / "examples" / "scorecard.toml").read_text()
)
STEPS = EXAMPLE["steps"]
L2 = next(s["l2"] for s in STEPS if s["kind"] == "lr")
#: index of each step kind in the example (each occurs once)
AT = {s["kind"]: i for i, s in enumerate(STEPS)}
SELECT = STEPS[AT["select"]]


def _result(record, kind: str) -> dict:
    return record.result[f"{AT[kind] + 1}:{kind}"]


@pytest.fixture(scope="module")
def credit(tmp_path_factory: pytest.TempPathFactory):
    c = Consortium(tmp_path_factory.mktemp("scorecard"), tls=True)
    for party, (_table, label, features) in DEMO_PARTIES.items():
        c.add_silo(
            SiloSpec(
                party,
                DEMO_DATA_DIR / f"demo_{party}.csv.gz",
                list(features),
                label=label,
                id_column="customer_id",
                policy=ACTIVE_POLICY if label else PASSIVE_POLICY,
            )
        )
    c.start_all()
    roles = {p: str(v["role"]) for p, v in EXAMPLE["parties"].items()}
    record = run_job(c.job(roles, STEPS, name="card"), clients=c.clients(), store=c.store())
    yield c, record
    c.stop_all()


def _woe_state(c: Consortium, party: str, job: str) -> tuple[list[Characteristic], list]:
    stored = c.nodes[party].ctx.store.load_checkpoint(job, f"woe/{AT['woe']}")
    assert stored is not None
    chars = [Characteristic.from_dict(d) for d in stored["characteristics"]]
    woe = [[np.nan if v is None else v for v in row] for row in stored["woe"]]
    return chars, woe


def _aligned(c: Consortium, party: str, alignment: str, cols: list[str]) -> np.ndarray:
    ctx = c.nodes[party].ctx
    return ctx.data.load_aligned("main", alignment, cols)


def test_scorecard_job_runs_every_step(credit) -> None:
    c, record = credit
    assert record.state == "succeeded", record.error
    assert list(AT) == ["psi", "split", "stats", "woe", "select", "lr", "evaluate", "score"]
    woe = _result(record, "woe")
    assert woe["characteristics"] == {"bank": 6, "bureau": 8, "lender": 9}
    assert woe["released_to_owner"] == {
        "bureau": {"iv": True, "woe": True},
        "lender": {"iv": True, "woe": True},
    }
    kept = _result(record, "select")["kept"]
    assert all(1 <= k["kept"] <= k["of"] for k in kept.values())
    assert _result(record, "evaluate")["metrics"]["auc"] > 0.6
    assert _result(record, "score")["written"] > 0
    stats = _result(record, "stats")
    assert len(stats["correlation"]["columns"]) == 23 and stats["vif"] is not None
    assert "bank.#0" in stats["correlation"]["columns"]  # the bank releases no names


def test_vif_drops_match_pooled_and_dropped_columns_are_not_used(credit) -> None:
    c, record = credit
    job = record.job_id
    train = STEPS[AT["stats"]]["alignment"]
    labels, xs = [], []
    for party in ("bank", "bureau", "lender"):
        cols = list(DEMO_PARTIES[party][2])
        xs.append(_aligned(c, party, train, cols))
        names = [f"#{i}" for i in range(len(cols))] if party == "bank" else cols
        labels += [f"{party}.{name}" for name in names]
    pooled = np.corrcoef(np.hstack(xs).T)
    # the released matrix is the pooled Pearson matrix (the bank's columns by index)
    released = np.asarray(_result(record, "stats")["correlation"]["matrix"], dtype=np.float64)
    np.testing.assert_allclose(released, pooled, atol=1e-6)
    # the standard backward VIF procedure on the pooled columns
    left, expected = list(range(len(labels))), []
    while True:
        values = np.diag(np.linalg.inv(pooled[np.ix_(left, left)]))
        if values.max() <= SELECT["max_vif"]:
            break
        expected.append(labels[left.pop(int(np.argmax(values)))])
    dropped = _result(record, "select")["dropped"]["max_vif"]
    assert dropped == expected and dropped, dropped
    for party in ("bank", "bureau", "lender"):
        store = c.nodes[party].ctx.store
        chosen = store.load_checkpoint(job, f"select/{AT['select']}")["columns"]
        used = store.load_model_part(f"{job}-lr").payload["columns"]
        assert used == chosen
        cols = list(DEMO_PARTIES[party][2])
        mine = [d.split(".", 1)[1] for d in dropped if d.startswith(f"{party}.")]
        gone = {cols[int(m[1:])] if m.startswith("#") else m for m in mine}
        assert not gone & set(used), (party, gone, used)


def test_scorecard_matches_sklearn_on_pooled_woe_columns(credit) -> None:
    c, record = credit
    job = record.job_id
    train, test = "credit-train", "credit-test"
    cols, xs_train, xs_test = [], [], []
    for party in ("bank", "bureau", "lender"):
        part = c.nodes[party].ctx.store.load_model_part(f"{job}-lr").payload
        chars, woe = _woe_state(c, party, job)
        by_name = {ch.name: i for i, ch in enumerate(chars)}
        mine = [str(x) for x in part["columns"]]
        pick = [by_name[m] for m in mine]
        sel_chars, sel_woe = [chars[i] for i in pick], [woe[i] for i in pick]
        xs_train.append(woe_matrix(sel_chars, sel_woe, _aligned(c, party, train, mine)))
        xs_test.append(woe_matrix(sel_chars, sel_woe, _aligned(c, party, test, mine)))
        cols += mine
        # each party stores the points table of its own characteristics, and only those
        assert [t["name"] for t in part["scorecard"]["characteristics"]] == mine
    y_train = c.nodes["bank"].ctx.data.load_aligned_labels("main", train)
    y_test = c.nodes["bank"].ctx.data.load_aligned_labels("main", test)
    x_train, x_test = np.hstack(xs_train), np.hstack(xs_test)
    mean, sd = x_train.mean(axis=0), x_train.std(axis=0)
    sd[sd == 0] = 1.0
    ref = LogisticRegression(C=sklearn_c(L2, len(y_train)), max_iter=5000)
    ref.fit((x_train - mean) / sd, y_train)
    ref_auc = roc_auc_score(y_test, ref.decision_function((x_test - mean) / sd))
    reports = c.configs["bank"].parent / "reports"
    report = json.loads((reports / f"{job}-lr.json").read_text())
    fed_auc = report["metrics"]["auc"]
    print(f"scorecard AUC {fed_auc:.4f}, scikit-learn on pooled WOE columns {ref_auc:.4f}")
    assert abs(fed_auc - ref_auc) <= 0.005, (fed_auc, ref_auc)
    # the report shows the label holder's scorecard table
    card = report["scorecard"]
    assert {t["name"] for t in card["characteristics"]} <= set(DEMO_PARTIES["bank"][2])
    assert card["held_elsewhere"] == ["bureau", "lender"]
    html = (reports / f"{job}-lr.html").read_text()
    assert 'id="scorecard"' in html and "table-scorecard-0" in html


def test_score_writes_probabilities_and_points(credit) -> None:
    c, record = credit
    engine = create_engine(c.nodes["bank"].ctx.config.database_url)
    with engine.connect() as conn:
        probs = dict(conn.execute(text("select id, score from credit_scores")).all())
        points = dict(conn.execute(text("select id, score from credit_scores_points")).all())
    engine.dispose()
    assert probs and probs.keys() == points.keys()
    ids = sorted(probs)[:200]
    p = np.array([probs[i] for i in ids])
    pts = np.array([points[i] for i in ids])
    factor = 20 / np.log(2)
    expected = 600 - factor * np.log(50) - factor * np.log(p / (1 - p))
    np.testing.assert_allclose(pts, expected, rtol=1e-9)
    # higher points, lower risk
    assert np.all(np.diff(pts[np.argsort(p)]) <= 1e-9)
    # the passive silos' policies do not release their points per row: no table of theirs
    with engine.connect() as conn:
        tables = {r[0] for r in conn.execute(text("select name from sqlite_master"))}
    engine.dispose()
    assert "credit_scores_points_bank" in tables
    assert not {"credit_scores_points_bureau", "credit_scores_points_lender"} & tables


def test_each_silo_ledger_shows_what_it_revealed(credit) -> None:
    c, record = credit
    job = record.job_id
    bank = {e.kind for e in c.nodes["bank"].ctx.ledger.entries(job)}
    bureau = {e.kind for e in c.nodes["bureau"].ctx.ledger.entries(job)}
    assert {"woe.labels", "woe.result"} <= bank
    assert "woe.counts" in bureau and "woe.labels" not in bureau
    assert {"stats.encrypted_columns", "stats.cross_products"} & bureau
