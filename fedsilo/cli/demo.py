"""`fedsilo demo`: a whole consortium on this machine, on bundled real data, with mTLS.

A bank (labels and payment history), a credit bureau and a second lender (other columns of the
same customers, with partial overlap and string customer ids) each get a SQLite database and a
silo node of their own: a ``fedsilo silo serve`` process each (:mod:`fedsilo.cli.launch`), with
certificates from a fresh consortium CA in the demo folder. This process is the coordinator, as
``fedsilo run job.toml`` is: it runs PSI -> split -> SecureBoost -> evaluation -> logistic
regression -> evaluation -> batch scoring against the three processes over mTLS, prints where
everything landed and stops the silos (on success, failure, Ctrl-C or SIGTERM alike). With
``--serve`` the silos stay up afterwards, for ``fedsilo run <folder>/job.toml`` (the job
replaces its alignment, so it reruns as often as wanted), until Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from fedsilo.cli.launch import SiloLaunch, launch_silos, stop_on_sigterm, wait_for_signal
from fedsilo.cli.progress import RichProgress
from fedsilo.coordinator.config import load_coordinator_config, load_job_spec
from fedsilo.coordinator.connect import connect_silos
from fedsilo.coordinator.orchestrator import run_job
from fedsilo.coordinator.store import JobRecord, JobStore
from fedsilo.crypto import certs
from fedsilo.errors import ConfigError
from fedsilo.silo_node.demo_data import DEMO_PARTIES, write_demo_consortium

MARKER = ".fedsilo-demo"


def _prepare(workdir: Path) -> None:
    """Use an empty folder, or one a previous demo made (recognised by its marker file)."""
    if workdir.exists() and any(workdir.iterdir()):
        if not (workdir / MARKER).exists():
            raise ConfigError(f"{workdir} is not empty and was not made by `fedsilo demo`")
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    (workdir / MARKER).write_text("made by fedsilo demo; safe to delete\n")


def _certificates(workdir: Path) -> None:
    folder = workdir / "certs"
    certs.init_ca(folder, name="fedsilo demo consortium CA")
    certs.issue(folder, "coordinator", role="coordinator")
    for party in DEMO_PARTIES:
        certs.issue(folder, party, role="silo")


def _coordinator_toml(workdir: Path, addresses: dict[str, str]) -> Path:
    silos = "".join(f'\n[silos.{p}]\naddress = "{a}"\n' for p, a in addresses.items())
    path = workdir / "coordinator.toml"
    path.write_text(
        'name = "coordinator"\nlisten = "127.0.0.1:50050"\n'
        'database = "sqlite:///coordinator.db"\n\n[tls]\nca = "certs/ca.pem"\n'
        'cert = "certs/coordinator.pem"\nkey = "certs/coordinator.key"\n' + silos
    )
    return path


def _job_toml(workdir: Path) -> Path:
    path = workdir / "job.toml"
    path.write_text(f"""# the demo's job. To rerun it, keep the demo's silos up with
#   fedsilo demo --serve --workdir {workdir}
# (or start each: fedsilo silo serve --config {workdir}/bank.toml, and bureau, lender), then
#   fedsilo run {path}
# The psi step replaces its alignment (replace = true), so every rerun starts afresh.
name = "default-risk"
coordinator = "coordinator.toml"

[parties.bank]
dataset = "customers"
role = "active"

[parties.bureau]
dataset = "customers"
role = "passive"

[parties.lender]
dataset = "customers"
role = "passive"

[[steps]]
kind = "psi"
alignment = "default-risk"
replace = true

[[steps]]
kind = "split"
test_fraction = 0.2
seed = 42

[[steps]]
kind = "secureboost"
n_estimators = 20          # xgboost on the joined data: AUC 0.771 (30 trees: 0.772)
max_depth = 3
learning_rate = 0.3
max_bin = 32
reg_lambda = 1.0

[[steps]]
kind = "evaluate"

[[steps]]
kind = "lr"

[[steps]]
kind = "evaluate"

[[steps]]
kind = "score"
model = "secureboost"      # the SecureBoost model trained above (or a registry id)
table = "risk_scores"
""")
    return path


def _summary(console: Console, record: JobRecord, workdir: Path, seconds: float) -> None:
    result: dict[str, Any] = record.result
    steps = {k.split(":", 1)[1]: v for k, v in result.items() if ":" in k}
    table = Table(title=f"fedsilo demo: job {record.job_id} {record.state} in {seconds:.0f} s")
    table.add_column("what")
    table.add_column("result", overflow="fold")
    psi = steps.get("psi", {})
    table.add_row("customers shared by all three (PSI)", str(psi.get("count", "?")))
    for key, value in result.items():
        if key.endswith(":evaluate"):
            m = value["metrics"]
            table.add_row(
                f"{value['model']} test AUC",
                f"{m.get('auc') or float('nan'):.4f} (bank alone: "
                f"{m.get('label_holder_only_auc') or float('nan'):.4f})",
            )
            table.add_row("  report (at the bank)", value["report"])
    score = steps.get("score", {})
    if score:
        table.add_row(
            "scores", f"{score['rows']} rows in table '{score['table']}' of {workdir / 'bank.db'}"
        )
    table.add_row("audit ledgers", f"fedsilo audit --silo {workdir / 'bank.toml'}")
    table.add_row("silo processes' logs", str(workdir / "logs"))
    console.print(table)


def _run(workdir: Path, console: Console) -> JobRecord:
    spec = load_job_spec(_job_toml(workdir))
    consortium = load_coordinator_config(workdir / "coordinator.toml")
    store = JobStore(consortium.database_url)
    with RichProgress(console) as progress:
        return run_job(spec, clients=connect_silos(consortium), store=store, progress=progress)


def _serve(console: Console, workdir: Path) -> None:
    console.print(
        f"The silos keep serving. Rerun the job in another terminal:\n"
        f"  fedsilo run {workdir / 'job.toml'}\n"
        f"  fedsilo jobs --config {workdir / 'coordinator.toml'}\n"
        "Ctrl-C stops the silos."
    )
    try:
        wait_for_signal()
    except KeyboardInterrupt:
        console.print("stopping the silos")


def demo(args: argparse.Namespace) -> int:
    console = Console()
    workdir: Path = args.workdir.resolve()
    started = time.perf_counter()
    _prepare(workdir)
    _certificates(workdir)
    configs = write_demo_consortium(workdir, tls=True)  # databases loaded, configs written
    specs = [SiloLaunch(party, path) for party, path in configs.items()]
    with stop_on_sigterm(), launch_silos(specs, logs=workdir / "logs") as silos:
        _coordinator_toml(workdir, silos.addresses)
        record = _run(workdir, console)
        _summary(console, record, workdir, time.perf_counter() - started)
        (workdir / "summary.json").write_text(json.dumps(record.result, indent=2))
        if args.serve:
            _serve(console, workdir)
    return 0
