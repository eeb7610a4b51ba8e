"""One job schema: every step kind declares its keys once (its schema.py); the coordinator
refuses a bad job before contacting any silo, each silo refuses it again at OpenJob with the same
code and checks its policy there, `fedsilo job check` runs the check alone, docs/jobs.md is
generated from the schemas, and an evaluate step may take its inputs from earlier jobs."""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from bundled_data import data_file
from support import Consortium, SiloSpec

from fedsilo.cli.main import main
from fedsilo.coordinator.config import JobSpec, parse_job_spec
from fedsilo.coordinator.drivers import driver_kinds
from fedsilo.coordinator.orchestrator import run_job
from fedsilo.coordinator.store import JobStore
from fedsilo.errors import ConfigError, FedsiloError, JobError, PolicyError, ProtocolError
from fedsilo.jobschema import SCHEMAS, check_step, check_steps
from fedsilo.ml.lr_common import LRConfig
from fedsilo.protocols.hlr.horizontal import HLRConfig
from fedsilo.protocols.hxgb.training import HxgbParams
from fedsilo.protocols.secureboost.params import SecureBoostParams

ROOT = Path(__file__).resolve().parent.parent
GUEST = [f"x{i}" for i in range(10)]
HOST = [f"x{i}" for i in range(10)]
PARTIES = {"bank": "active", "bureau": "passive"}
PSI = {"kind": "psi", "alignment": "b"}
SGB = {"kind": "secureboost", "n_estimators": 2, "max_depth": 2, "max_bin": 16}

#: (bad step, what the one-line error must say); each is the job's third step
BAD_STEPS: list[tuple[dict[str, Any], str]] = [
    (
        {**SGB, "n_estimator": 3},
        "step 3 (secureboost): unknown key 'n_estimator' (did you mean 'n_estimators'?)",
    ),
    ({**SGB, "max_depth": "3"}, "step 3 (secureboost): 'max_depth' must be an integer in"),
    ({**SGB, "max_depth": 40}, "step 3 (secureboost): 'max_depth' must be an integer in [1, 16]"),
    (
        {"kind": "secureboos"},
        "step 3: unknown step kind 'secureboos' (did you mean 'secureboost'?)",
    ),
    ({"kind": "split", "test_size": 0.3}, "step 3 (split): unknown key 'test_size'"),
    (
        {"kind": "lr", "params": {"l2": 0.1}},
        "step 3 (lr): parameters go in the step table itself, not in a nested 'params' table",
    ),
    ({"kind": "lr", "max_epochs": 3}, "step 3 (lr): unknown key 'max_epochs'"),
    ({"kind": "lr", "batch_size": 10}, "step 3 (lr): 'batch_size' must be an integer >= 100"),
    (
        {"kind": "split", "test_fraction": 0.6, "valid_fraction": 0.5},
        "step 3 (split): 'valid_fraction' plus 'test_fraction' must be below 1",
    ),
    (
        {**SGB, "early_stopping_rounds": 2},
        "step 3 (secureboost): 'early_stopping_rounds' needs a validation alignment",
    ),
]


class Untouchable:
    """A silo client whose every use fails the test: a refused job must contact no silo."""

    def __init__(self, party: str) -> None:
        self.party = party

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(
            f"silo '{self.party}' contacted ({name}) by a job refused in pre-flight"
        )


def _spec(step: dict[str, Any]) -> JobSpec:
    """Built directly, not parsed: run_job's own pre-flight is what is tested."""
    parties = {p: {"dataset": "main", "role": r} for p, r in PARTIES.items()}
    return JobSpec(name="t", parties=parties, steps=[PSI, {"kind": "split"}, step])


@pytest.mark.parametrize(("step", "message"), BAD_STEPS)
def test_a_bad_job_is_refused_before_any_silo_is_contacted(
    tmp_path: Path, step: dict[str, Any], message: str
) -> None:
    clients: Any = {p: Untouchable(p) for p in PARTIES}
    store = JobStore(f"sqlite:///{tmp_path / 'coord.db'}")
    with pytest.raises(FedsiloError) as err:
        run_job(_spec(step), clients=clients, store=store)
    text = str(err.value)
    assert message in text and "\n" not in text


@pytest.mark.parametrize(("step", "message"), BAD_STEPS[:-1])
def test_parse_time_errors_name_the_file_step_and_key(
    tmp_path: Path, step: dict[str, Any], message: str
) -> None:
    raw = {
        "name": "t",
        "parties": {p: {"dataset": "main", "role": r} for p, r in PARTIES.items()},
        "steps": [PSI, {"kind": "split"}, step],
    }
    with pytest.raises(ConfigError) as err:
        parse_job_spec(raw, tmp_path / "job.toml")
    assert str(err.value).startswith("job.toml: ") and message in str(err.value)


def test_defaults_are_filled_and_every_kind_has_a_driver() -> None:
    assert sorted(SCHEMAS) == driver_kinds()
    values = check_step({"kind": "split"}, 1)
    assert values == {"alignment": None, "test_fraction": 0.2, "valid_fraction": 0.0, "seed": 42}
    assert check_steps([{"kind": "lr", "max_iter": 3}])[0]["max_iter"] == 3
    with pytest.raises(ConfigError, match="at least one"):
        check_steps([])


@pytest.mark.parametrize(
    ("cls", "kind"),
    [
        (SecureBoostParams, "secureboost"),
        (HxgbParams, "hxgb"),
        (LRConfig, "lr"),
        (HLRConfig, "hlr"),
    ],
)
def test_parameter_dataclasses_take_defaults_from_the_schema(cls: Any, kind: str) -> None:
    """One truth: every schema parameter is a dataclass field with the schema's default."""
    schema = {p.name: p for p in SCHEMAS[kind].params}
    own = {f.name: f.default for f in fields(cls)}
    training = {name: own[name] for name in schema if name in own}
    assert training, kind
    assert {n: schema[n].default for n in training} == training
    assert set(own) - set(schema) <= {"local_epochs"}  # only hlr trains more than one pass


def test_max_iter_bounds_come_from_the_schema() -> None:
    assert LRConfig.from_step({"kind": "lr", "max_iter": 7}).max_iter == 7
    with pytest.raises(ConfigError, match="'max_iter' must be an integer in \\[1, 200\\]"):
        LRConfig(max_iter=0)
    with pytest.raises(ConfigError, match="'class_weight'"):
        LRConfig(class_weight="weird")  # type: ignore[arg-type]


# --- fedsilo job check -----------------------------------------------------------------------


def _job_file(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "job.toml"
    path.write_text(
        'name = "t"\n[parties.bank]\ndataset = "d"\nrole = "active"\n'
        '[parties.bureau]\ndataset = "d"\nrole = "passive"\n'
        '[[steps]]\nkind = "psi"\n[[steps]]\nkind = "split"\n' + extra
    )
    return path


def test_job_check_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _job_file(tmp_path, '[[steps]]\nkind = "secureboost"\nn_estimators = 3\n')
    assert main(["job", "check", str(good)]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == "job.toml: OK (job 't', 3 step(s): psi, split, secureboost)"
    bad = _job_file(tmp_path, '[[steps]]\nkind = "secureboost"\nn_estimator = 3\n')
    assert main(["job", "check", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "fedsilo: error: job.toml: step 3 (secureboost): unknown key 'n_estimator' "
        "(did you mean 'n_estimators'?)"
    ]
    # a refusal only a driver knows (roles) is found by the check too
    roles = _job_file(tmp_path, '[[steps]]\nkind = "hxgb"\n')
    assert main(["job", "check", str(roles)]) == 2
    assert "role 'member'" in capsys.readouterr().err


# --- docs/jobs.md ------------------------------------------------------------------------------


def _jobs_doc() -> ModuleType:
    path = ROOT / "scripts" / "jobs_doc.py"
    spec = importlib.util.spec_from_file_location("jobs_doc", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("jobs_doc", module)
    spec.loader.exec_module(module)
    return module


def test_jobs_doc_is_the_generated_one() -> None:
    doc = (ROOT / "docs" / "jobs.md").read_text()
    assert doc == _jobs_doc().render(), (
        "docs/jobs.md is stale: run `python scripts/jobs_doc.py --write`"
    )
    for kind, schema in SCHEMAS.items():
        assert f"## `{kind}`" in doc
        assert all(f"| `{p.name}` |" in doc for p in schema.params)
    assert "docs/jobs.md" in (ROOT / "README.md").read_text()


# --- at the silos ------------------------------------------------------------------------------


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Consortium]:
    c = Consortium(tmp_path)
    c.add_silo(SiloSpec("bank", data_file("breast_hetero_guest"), GUEST, label="y"))
    c.add_silo(SiloSpec("bureau", data_file("breast_hetero_host"), HOST))
    c.start_all()
    yield c
    c.stop_all()


def test_a_silo_refuses_an_invalid_spec_at_open_job(pair: Consortium) -> None:
    """A coordinator that skips its own check gets the same refusal from the silo."""
    clients = pair.clients()
    wire = _spec({**SGB, "n_estimator": 3}).to_wire("bad-spec")
    with pytest.raises(ProtocolError, match="step 3 \\(secureboost\\): unknown key 'n_estimator'"):
        clients["bank"].open_job("bad-spec", wire, resume=False)
    nested = _spec({"kind": "lr", "params": {"l2": 0.1}}).to_wire("nested")
    with pytest.raises(ProtocolError, match="flatten it"):
        clients["bureau"].open_job("nested", nested, resume=False)


def test_a_small_lr_key_is_refused_at_open_job(pair: Consortium) -> None:
    """Before: refused at lr.setup, after PSI and the data load. Now: at OpenJob, nothing ran."""
    spec = pair.job(PARTIES, [PSI, {"kind": "lr", "key_bits": 1024}])
    started = time.perf_counter()
    with pytest.raises(
        JobError,
        match="step 2 \\(lr\\): policy requires Paillier keys of at least 2048 bits, job uses 1024",
    ):
        run_job(spec, clients=pair.clients(), store=pair.store())
    assert time.perf_counter() - started < 10
    for party in PARTIES:
        assert pair.nodes[party].ctx.store.list_alignments() == []  # PSI never ran
    wire = spec.to_wire("direct")
    with pytest.raises(PolicyError, match="at least 2048 bits"):
        pair.clients()["bureau"].open_job("direct", wire, resume=False)  # passives refuse too


def test_evaluate_a_registered_model_on_a_stored_alignment_without_a_split(
    pair: Consortium,
) -> None:
    store = pair.store()
    trained = run_job(
        pair.job(PARTIES, [PSI, {"kind": "split"}, SGB], name="train"),
        clients=pair.clients(),
        store=store,
    )
    model = trained.result["3:secureboost"]["model"]
    evaluate = {"kind": "evaluate", "model": model, "alignment": "b-test"}
    record = run_job(
        pair.job(PARTIES, [evaluate], name="later"), clients=pair.clients(), store=store
    )
    metrics = record.result["1:evaluate"]["metrics"]
    assert (
        record.state == "succeeded"
        and metrics["rows"] == trained.result["2:split"]["sizes"]["test"]
    )
    assert metrics["auc"] > 0.9
    # the row count planned before scoring is in the label holder's ledger, as released
    planned = [
        e
        for e in pair.nodes["bank"].ctx.ledger.entries(record.job_id)
        if e.kind == "job.released" and e.step == "evaluate.plan"
    ]
    assert len(planned) == 1 and f'"rows": {metrics["rows"]}' in planned[0].reveals
    # the accepted step's alignment is the only one predictions may run over
    with pytest.raises(JobError, match="needs 'alignment'"):
        run_job(
            pair.job(PARTIES, [{"kind": "evaluate", "model": model}], name="none"),
            clients=pair.clients(),
            store=store,
        )


def test_evaluate_plan_withholds_a_count_below_the_statistic_floor(tmp_path: Path) -> None:
    """The label holder releases the test part's row count only at or above its
    ``min_rows_per_statistic``; below, the evaluate step is refused before any prediction."""
    c = Consortium(tmp_path)
    c.add_silo(
        SiloSpec(
            "bank",
            data_file("breast_hetero_guest"),
            GUEST,
            label="y",
            policy="min_rows_per_statistic = 200\n",
        )
    )
    c.add_silo(SiloSpec("bureau", data_file("breast_hetero_host"), HOST))
    c.start_all()
    try:
        store = c.store()
        trained = run_job(
            c.job(PARTIES, [PSI, {"kind": "split"}, SGB], name="train"),
            clients=c.clients(),
            store=store,
        )
        model = trained.result["3:secureboost"]["model"]
        evaluate = {"kind": "evaluate", "model": model, "alignment": "b-test"}
        with pytest.raises(JobError, match="below this silo's minimum of 200"):
            run_job(c.job(PARTIES, [evaluate], name="later"), clients=c.clients(), store=store)
        (job,) = [j for j in store.list_jobs() if j.name == "later"]
        kinds = {e.kind for e in c.nodes["bank"].ctx.ledger.entries(job.job_id)}
        assert "job.released" not in kinds
    finally:
        c.stop_all()
