"""The scriptable CLI: every result-printing command's ``--json`` parsed and checked field by
field, human tables with headers and newest first, global options before or after the
subcommand, and one table of exit codes (the same fault gives the same code from every command).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bundled_data import data_file
from support import Consortium, SiloSpec, free_port, run_cli

from fedsilo.errors import EXIT_CODES

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
GUEST = [f"x{i}" for i in range(10)]
HOST = [f"x{i}" for i in range(20)]


def as_json(*args: str) -> Any:
    out = run_cli(*args)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _job_file(c: Consortium, name: str, steps: str) -> Path:
    parties = (
        '[parties.bank]\ndataset = "main"\nrole = "active"\n'
        '[parties.bureau]\ndataset = "main"\nrole = "passive"\n'
    )
    path = c.root / f"{name}.toml"
    path.write_text(f'coordinator = "coordinator.toml"\nname = "{name}"\n{parties}{steps}')
    return path


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two silos under mTLS, a PSI + SecureBoost job and then a noop job, run by the CLI."""
    c = Consortium(tmp_path_factory.mktemp("cli"), tls=True)
    c.add_silo(SiloSpec("bank", data_file("breast_hetero_guest"), GUEST, label="y"))
    c.add_silo(SiloSpec("bureau", data_file("breast_hetero_host"), HOST))
    c.start_all()
    c.coordinator_config()
    train = _job_file(
        c,
        "train",
        '[[steps]]\nkind = "psi"\nalignment = "b"\n'
        '[[steps]]\nkind = "secureboost"\nn_estimators = 2\nmax_depth = 2\nmax_bin = 8\n',
    )
    first = as_json("run", str(train), "--json")
    second = as_json("--json", "run", str(_job_file(c, "ping", '[[steps]]\nkind = "noop"\n')))
    try:
        yield {"c": c, "config": str(c.root / "coordinator.toml"), "train": first, "ping": second}
    finally:
        c.stop_all()


def test_run_json(ran: dict[str, Any]) -> None:
    doc = ran["train"]
    assert set(doc) == {
        "job_id",
        "name",
        "state",
        "reason",
        "exit_code",
        "created_at",
        "updated_at",
        "result",
    }
    assert doc["name"] == "train" and doc["job_id"].startswith("train-")
    assert doc["state"] == "succeeded" and doc["exit_code"] == 0 and doc["reason"] == ""
    assert doc["result"]["1:psi"]["count"] == 569
    assert doc["result"]["1:psi"]["alignment"] == "b"
    assert doc["result"]["2:secureboost"]["trees"] == 2
    assert doc["result"]["2:secureboost"]["model"] == "train-secureboost-v1"
    assert ran["ping"]["state"] == "succeeded" and ran["ping"]["name"] == "ping"


def test_jobs_json_newest_first_and_global_options_anywhere(ran: dict[str, Any]) -> None:
    config = ran["config"]
    placements = [
        ("jobs", "--config", config, "--json"),
        ("--json", "jobs", "--config", config),
        ("--config", config, "jobs", "--json", "--log-level", "error"),
        ("jobs", "--log-format", "json", "--json", "--debug", "--config", config),
    ]
    docs = [as_json(*args) for args in placements]
    assert all(d == docs[0] for d in docs)
    jobs = docs[0]["jobs"]
    assert [j["job_id"] for j in jobs] == [ran["ping"]["job_id"], ran["train"]["job_id"]]
    for j in jobs:
        assert set(j) == {
            "job_id",
            "name",
            "state",
            "reason",
            "exit_code",
            "created_at",
            "updated_at",
        }
        assert j["state"] == "succeeded" and j["exit_code"] == 0
    table = run_cli("jobs", "--config", config).stdout.splitlines()
    assert table[0].split() == ["JOB", "STATE", "CREATED", "UPDATED", "REASON"]
    assert [line.split()[0] for line in table[1:]] == [j["job_id"] for j in jobs]


def test_jobs_show_and_logs_json(ran: dict[str, Any]) -> None:
    config, job_id = ran["config"], ran["train"]["job_id"]
    shown = as_json("jobs", "show", job_id, "--config", config, "--json")
    assert as_json("jobs", job_id, "--json", "--config", config) == shown
    assert shown["job_id"] == job_id and shown["state"] == "succeeded"
    assert shown["result"] == ran["train"]["result"]
    messages = [e["message"] for e in shown["events"]]
    assert messages[0] == "sessions open at bank, bureau" and messages[-1].startswith("ledger")
    assert "succeeded" in messages and all(isinstance(e["seq"], int) for e in shown["events"])
    assert set(shown["ledger_heads"]) == {"bank", "bureau"}
    assert all(h["signed"] is True and len(h["hash"]) == 64 for h in shown["ledger_heads"].values())
    tasks = {t["description"]: t for t in shown["progress"]["tasks"]}
    assert tasks["SecureBoost trees"]["completed"] == 2 and tasks["SecureBoost trees"]["finished"]
    assert tasks["psi: ids hashed and blinded"]["total"] == 2 * 569
    assert tasks["psi: peers' ids blinded again"]["completed"] == 2 * 569
    logs = as_json("--json", "jobs", "logs", job_id, "--config", config)
    assert logs["job_id"] == job_id and logs["state"] == "succeeded"
    assert [e["message"] for e in logs["events"]] == messages
    assert logs["status"]["exit_code"] == 0 and logs["status"]["result"] == shown["result"]
    text = run_cli("jobs", "logs", job_id, "--config", config).stdout.splitlines()
    assert [line.split("  ", 1)[1] for line in text] == messages


def test_models_json(ran: dict[str, Any]) -> None:
    config = ran["config"]
    (model,) = as_json("models", "--json", "--config", config)["models"]
    assert model["model_id"] == "train-secureboost-v1" and model["kind"] == "secureboost"
    assert model["version"] == 1 and model["job_id"] == ran["train"]["job_id"]
    assert model["parties"] == {"bank": "active", "bureau": "passive"}
    assert model["metrics"]["trees"] == 2 and model["trained_on"]["alignment"] == "b"
    shown = as_json("--json", "models", "show", "train-secureboost-v1", "--config", config)
    assert shown == model
    table = run_cli("models", "--config", config).stdout.splitlines()
    assert table[0].split() == ["MODEL", "KIND", "JOB", "CREATED", "AUC"]
    assert table[1].split()[:3] == ["train-secureboost-v1", "secureboost", model["job_id"]]


def test_describe_json(ran: dict[str, Any]) -> None:
    doc = as_json("silo", "describe", "--json", "--config", ran["config"])
    silos = {s["party"]: s for s in doc["silos"]}
    assert set(silos) == {"bank", "bureau"}
    for party, s in silos.items():
        assert s["health"] == "SERVING" and s["api_version"] == "fedsilo.v1"
        (dataset,) = s["datasets"]
        assert dataset["name"] == "main" and dataset["rows"] == 569 and dataset["id_column"] == "id"
        assert s["policy"]["min_intersection"] >= 100
        assert s["address"].startswith("127.0.0.1:")
    assert silos["bank"]["datasets"][0]["label"] == "y"
    assert silos["bureau"]["datasets"][0]["label"] is None
    assert len(silos["bureau"]["datasets"][0]["features"]) == 20
    table = run_cli("silo", "describe", "--config", ran["config"]).stdout.splitlines()
    assert table[0].split()[:3] == ["SILO", "ADDRESS", "HEALTH"] and len(table) == 3


def test_audit_json(ran: dict[str, Any]) -> None:
    c: Consortium = ran["c"]
    bank = str(c.configs["bank"])
    job_id = ran["train"]["job_id"]
    entries = as_json("audit", "--silo", bank, "--json", "--job", job_id)
    assert entries["party"] == "bank"
    kinds = [e["kind"] for e in entries["entries"]]
    assert kinds[0] == "job.accepted" and kinds[-1] == "job.closed" and "psi.blinded" in kinds
    for e in entries["entries"]:
        assert e["job_id"] == job_id and isinstance(e["bytes"], int) and len(e["hash"]) == 64
    summary = as_json("--json", "audit", "--summary", "--silo", bank)
    rows = {(r["job_id"], r["to"], r["kind"]): r for r in summary["totals"]}
    blinded = rows[(job_id, "bureau", "psi.blinded")]
    mine = [e for e in entries["entries"] if e["kind"] == "psi.blinded"]
    assert blinded["messages"] == len(mine) and blinded["bytes"] == sum(e["bytes"] for e in mine)
    assert "psi.blinded" in summary["reveals"]
    verified = as_json("audit", "verify", "--silo", bank, "--json")
    assert verified["party"] == "bank" and verified["intact"] is True
    assert verified["entries"] >= len(kinds) and len(verified["head"]) == 64
    assert verified["anchors"] and "signature verified" in verified["anchors"][0]
    head = as_json("audit", "head", "--json", "--silo", bank)
    assert set(head) >= {"statement", "signature"}
    heads = as_json("audit", "heads", "--json", "--silo", bank)
    assert heads["party"] == "bank"
    assert {h["party"] for h in heads["heads"]} == {"bank", "bureau"}
    assert all(h["signed"] is True for h in heads["heads"])


def test_json_where_it_does_not_apply_is_refused() -> None:
    out = run_cli("silo", "serve", "--json", "--config", "nope.toml")
    assert out.returncode == 2 and "--json is not available" in out.stderr
    out = run_cli("jobs")
    assert out.returncode == 2 and "--config" in out.stderr


def test_missing_job_is_one_line_not_found(ran: dict[str, Any]) -> None:
    for args in (("jobs", "show", "nope"), ("jobs", "logs", "nope"), ("jobs", "cancel", "nope")):
        out = run_cli(*args, "--json", "--config", ran["config"])
        assert out.returncode == 10 and out.stdout == ""
        assert out.stderr.splitlines() == ["fedsilo: error: no job 'nope'"]


# --- exit codes ---------------------------------------------------------------------------------


def test_an_unreachable_silo_is_one_line_and_the_same_code_from_run_and_describe(
    tmp_path: Path,
) -> None:
    c = Consortium(tmp_path, tls=True)
    tls_section = c._tls_section("coordinator", silo=False)
    silos = "".join(
        f'[silos.{p}]\naddress = "127.0.0.1:{free_port()}"\n' for p in ("bank", "bureau")
    )
    (tmp_path / "coordinator.toml").write_text(
        f'name = "coordinator"\ndatabase = "sqlite:///{tmp_path / "c.db"}"\n{tls_section}{silos}'
    )
    job = _job_file(c, "j", '[[steps]]\nkind = "psi"\n')
    ran = run_cli("run", str(job))
    described = run_cli("silo", "describe", "--config", str(tmp_path / "coordinator.toml"))
    scripted = run_cli("run", str(job), "--json")
    for out in (ran, described, scripted):
        assert out.returncode == 9, out.stderr  # SiloUnavailable, from either command
        (line,) = out.stderr.splitlines()
        assert line.startswith("fedsilo: error: ") and "silo 'bank' unavailable" in line
    failed = json.loads(scripted.stdout)  # with --json the failed job's record too
    assert failed["state"] == "failed" and failed["exit_code"] == 9
    assert failed["result"] == {"error": "SiloUnavailable"}
    jobs = as_json("jobs", "--json", "--config", str(tmp_path / "coordinator.toml"))["jobs"]
    assert [j["job_id"] for j in jobs][0] == failed["job_id"]
    assert [j["state"] for j in jobs] == ["failed", "failed"]
    assert [j["exit_code"] for j in jobs] == [9, 9]


def test_exit_codes_are_one_table_in_help_and_readme() -> None:
    codes = [code for code, _name, _meaning in EXIT_CODES]
    assert len(codes) == len(set(codes))  # one code, one meaning
    help_text = run_cli("--help").stdout
    for code, name, _meaning in EXIT_CODES:
        assert re.search(rf"^\s+{code}\s+{re.escape(name or '-')}\s", help_text, re.M), code
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d+) \| `?(\w*)`? \|", section, re.M)
    assert [(int(code), name) for code, name in rows] == [(c, n) for c, n, _m in EXIT_CODES]
