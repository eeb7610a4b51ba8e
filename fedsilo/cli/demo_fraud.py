"""`fedsilo demo fraud`: a card-fraud consortium on this machine, on simulated transactions.

A card issuer (the label holder: amount, time, its customers' spending windows, the fraud label)
and an acquirer / payment processor (passive: its terminals' delayed risk windows) each get a
SQLite database of the same simulated transactions (``fedsilo.fraudsim``, the handbook's design)
and a silo node on loopback with mTLS. The coordinator runs PSI -> split -> SecureBoost (the
fraud model: 100 trees of depth 4) -> evaluation -> batch scoring; then it serves the model
online (``fedsilo.cli.demo_serving``: the ``serve`` preparation, the relay, the issuer's HTTPS
endpoint), scores held-out transactions through it and checks them against the batch scores.
The demo prints the model's AUC and its precision at a 1 % review rate beside the issuer-alone
baseline, and the online latency, throughput and largest online-batch difference beside them.
With ``--serve`` everything stays up for ``curl`` / ``fedsilo score-one`` until Ctrl-C.

The phases are functions of one ``FraudDemo``: ``setup`` (data, certificates, configs),
``running`` (the silo nodes), ``train`` (the job), ``serving`` (online), ``summary``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from fedsilo.cli.demo import _coordinator_toml, _prepare
from fedsilo.cli.demo_serving import (
    APP,
    MODEL_ID,
    MODEL_NAME,
    OnlineCheck,
    check_online,
    served,
    serving_section,
    try_lines,
)
from fedsilo.cli.launch import SiloLaunch, launch_silos, stop_on_sigterm, wait_for_signal
from fedsilo.cli.progress import RichProgress
from fedsilo.coordinator.config import load_coordinator_config, load_job_spec
from fedsilo.coordinator.connect import connect_silos
from fedsilo.coordinator.orchestrator import run_job
from fedsilo.coordinator.store import JobRecord, JobStore
from fedsilo.crypto import certs
from fedsilo.errors import ConfigError, JobError
from fedsilo.fraudsim import (
    ACQUIRER_FEATURES,
    ISSUER_FEATURES,
    ISSUER_LABEL,
    TX_ID,
    SimConfig,
    simulate,
    split_parties,
    write_party_csvs,
)
from fedsilo.silo_node.demo_data import DemoSilo, _free_port, write_consortium

__all__ = ["DEFAULT_ROWS", "FraudDemo", "demo_fraud"]

#: transactions simulated by default: the fraud model (100 trees, depth 4, 2048-bit keys) then
#: trains on half of them, evaluates and scores within the 90 s budget of a quiet 2-core
#: machine (estimated from CPU time on a loaded one: docs/fraud.md)
DEFAULT_ROWS = 12_000
#: depth of the fraud model of issue 15 (100 trees of depth 4)
DEPTH = 4
#: the review rate the summary shows (fraud teams review about the top 1 % of payments)
REVIEW_RATE = 0.01
DATASET = "transactions"
ALIGNMENT = "card-fraud"
SCORE_TABLE = "fraud_scores"
#: what the acquirer's policy lets the served model ask, rows per second and per day (the
#: demo's burst must fit; a real silo sets what its risk appetite allows)
SERVE_RATE_LIMIT, SERVE_DAILY_BUDGET = 20_000, 5_000_000
ISSUER, ACQUIRER = "issuer", "acquirer"


@dataclass
class FraudDemo:
    """One run of the fraud demo: its folder, its silos' configs and, while running, nodes."""

    workdir: Path
    configs: dict[str, Path]
    rows: int
    trees: int = 100
    #: the issuer's HTTPS scoring endpoint (loopback)
    http_port: int = 0
    addresses: dict[str, str] = field(default_factory=dict)

    @classmethod
    def setup(cls, workdir: Path, *, rows: int, seed: int, trees: int = 100) -> FraudDemo:
        """Simulate the transactions, split them, and lay out certificates, databases and
        configs for the issuer and the acquirer in an empty ``workdir``."""
        if not 1 <= trees <= 1000:
            raise ConfigError(f"--trees {trees}: use 1 to 1000 trees")
        config = SimConfig.for_rows(rows, seed=seed)  # a bad size fails before anything is made
        _prepare(workdir)
        _certificates(workdir)
        sim = simulate(config)
        csvs = {p.name.split(".")[0]: p for p in write_party_csvs(split_parties(sim), workdir)}
        http_port = _free_port()
        # the model's registry id is known before training (the job names it; the folder is
        # new), so both policies list it from the start: no policy change to reload later
        serve = f"serve_models = [{json.dumps(MODEL_ID)}]\n"
        silos = {
            ISSUER: DemoSilo(
                csv=csvs[ISSUER],
                table="card_transactions",
                id_column=TX_ID,
                features=ISSUER_FEATURES,
                label=ISSUER_LABEL,
                dataset=DATASET,
                protocols=("psi", "secureboost", "score", "serve"),
                extra_policy=serve,
                extra_sections=serving_section(http_port),
            ),
            ACQUIRER: DemoSilo(
                csv=csvs[ACQUIRER],
                table="terminal_history",
                id_column=TX_ID,
                features=ACQUIRER_FEATURES,
                dataset=DATASET,
                protocols=("psi", "secureboost", "score", "serve"),
                extra_policy=serve + f"serve_rate_limit = {SERVE_RATE_LIMIT}\n"
                f"serve_daily_budget = {SERVE_DAILY_BUDGET}\n",
            ),
        }
        configs = write_consortium(workdir, silos, tls=True)
        return cls(
            workdir=workdir, configs=configs, rows=len(sim), trees=trees, http_port=http_port
        )

    @contextmanager
    def running(self) -> Iterator[FraudDemo]:
        """Each silo its own ``fedsilo silo serve`` process under mTLS (stopped on the way out,
        whatever happens; ``fedsilo.cli.launch``), the coordinator config pointing at them."""
        specs = [SiloLaunch(party, path) for party, path in self.configs.items()]
        with stop_on_sigterm(), launch_silos(specs, logs=self.workdir / "logs") as silos:
            self.addresses = dict(silos.addresses)
            _coordinator_toml(self.workdir, self.addresses)
            yield self

    def train(self, console: Console) -> JobRecord:
        """PSI, split, the SecureBoost fraud model, its evaluation, and batch scoring."""
        spec = load_job_spec(_job_toml(self.workdir, self.trees))
        consortium = load_coordinator_config(self.workdir / "coordinator.toml")
        store = JobStore(consortium.database_url)
        with RichProgress(console) as progress:
            return run_job(spec, clients=connect_silos(consortium), store=store, progress=progress)

    @contextmanager
    def serving(self, record: JobRecord, console: Console) -> Iterator[OnlineCheck]:
        """Serve the trained model (``serve`` job, relay process, the issuer's endpoint), score
        held-out transactions online against the batch scores; the relay stops on the way out."""
        console.print(f"serving {MODEL_ID} online: serve job, relay, the issuer's endpoint")
        with served(self.workdir, record, logs=self.workdir / "logs") as began:
            check = check_online(
                self.workdir, self.http_port, alignment=f"{ALIGNMENT}-test", table=SCORE_TABLE
            )
            check.seconds = time.perf_counter() - began
            yield check


def _certificates(workdir: Path) -> None:
    folder = workdir / "certs"
    certs.init_ca(folder, name="fedsilo fraud demo consortium CA")
    certs.issue(folder, "coordinator", role="coordinator")
    for party in (ISSUER, ACQUIRER):
        certs.issue(folder, party, role="silo")
    # the issuer's application that asks for scores: its certificate comes from a CA of the
    # issuer's own applications, which the silos' gRPC servers do not trust
    certs.init_ca(folder / "apps", name="fraud demo issuer's applications CA")
    certs.issue(folder / "apps", APP, role="silo")


def _job_toml(workdir: Path, trees: int) -> Path:
    path = workdir / "job.toml"
    path.write_text(f"""# the fraud demo's job; `fedsilo run {path}` reruns it while the silos serve
name = "card-fraud"
coordinator = "coordinator.toml"

[parties.{ISSUER}]
dataset = "{DATASET}"
role = "active"

[parties.{ACQUIRER}]
dataset = "{DATASET}"
role = "passive"

[[steps]]
kind = "psi"
alignment = "{ALIGNMENT}"
replace = true

[[steps]]
kind = "split"
test_fraction = 0.5
seed = 42

[[steps]]
kind = "secureboost"
name = "{MODEL_NAME}"
n_estimators = {trees}
max_depth = {DEPTH}
learning_rate = 0.1
max_bin = 32
reg_lambda = 1.0

[[steps]]
kind = "evaluate"

[[steps]]
kind = "score"
model = "secureboost"
table = "{SCORE_TABLE}"
""")
    return path


def _review_precision(metrics: dict[str, Any] | None) -> float | None:
    for row in (metrics or {}).get("review") or []:
        if abs(float(row["rate"]) - REVIEW_RATE) < 1e-12:
            return row.get("precision")
    return None


def evaluation(record: JobRecord) -> dict[str, float | None]:
    """The fraud model's and the issuer-alone baseline's AUC and precision at the review rate.

    The AUCs are what the issuer released to the coordinator; the precisions come from the
    evaluation report, which stays at the issuer (this demo runs the issuer's silo here).
    """
    step = next(v for k, v in record.result.items() if k.endswith(":evaluate"))
    report = json.loads(Path(step["report"]).with_suffix(".json").read_text(encoding="utf-8"))
    return {
        "auc": step["metrics"].get("auc"),
        "baseline_auc": step["metrics"].get("label_holder_only_auc"),
        "precision": _review_precision(report.get("metrics")),
        "baseline_precision": _review_precision(report.get("baseline_metrics")),
    }


def _fmt(value: float | None) -> str:
    return "withheld" if value is None else f"{value:.4f}"


def summary(
    console: Console,
    demo: FraudDemo,
    record: JobRecord,
    seconds: float,
    online: OnlineCheck | None = None,
) -> None:
    """The two models side by side (a table that fits 80 columns), the online figures beside
    them, then where things are."""
    steps = {k.split(":", 1)[1]: v for k, v in record.result.items() if ":" in k}
    found = evaluation(record)
    table = Table(title=f"fedsilo demo fraud: job {record.state} in {seconds:.0f} s")
    table.add_column(f"fraud model: {demo.trees} trees, depth {DEPTH}")
    table.add_column("federated", justify="right")
    table.add_column("issuer alone", justify="right")
    table.add_row("test AUC", _fmt(found["auc"]), _fmt(found["baseline_auc"]))
    table.add_row(
        f"precision, top {REVIEW_RATE:.0%} reviewed",
        _fmt(found["precision"]),
        _fmt(found["baseline_precision"]),
    )
    console.print(table)
    if online is not None:
        online_table(console, online)
    psi = steps.get("psi", {}).get("count", "?")
    console.print(f"job {record.job_id}: {demo.rows} transactions simulated, {psi} joined by PSI")
    evaluate = next(v for k, v in record.result.items() if k.endswith(":evaluate"))
    console.print(f"report (at the issuer): {evaluate['report']}", soft_wrap=True)
    score = steps.get("score", {})
    if score:
        where = demo.workdir / f"{ISSUER}.db"
        console.print(
            f"scores: {score['rows']} rows in table '{score['table']}' of {where}", soft_wrap=True
        )
    console.print(f"audit ledgers: fedsilo audit --silo {demo.workdir / 'issuer.toml'}")


def online_table(console: Console, check: OnlineCheck) -> None:
    """Latency, throughput and the online-batch comparison (fits 80 columns)."""
    table = Table(title=f"online scoring of {MODEL_ID}: HTTPS + mTLS, issuer's endpoint")
    table.add_column("held-out transactions")
    for name in ("p50", "p99", "throughput"):
        table.add_column(name, justify="right")
    one, burst = check.single, check.burst
    table.add_row(
        f"{one['requests']:.0f} single requests, one by one",
        f"{one['p50_ms']:.1f} ms",
        f"{one['p99_ms']:.1f} ms",
        f"{one['per_s']:.0f} req/s",
    )
    table.add_row(
        f"burst: {burst['clients']:.0f} clients, {burst['transactions']:.0f} tx",
        f"{burst['p50_ms']:.1f} ms",
        f"{burst['p99_ms']:.1f} ms",
        f"{burst['tx_per_s']:.0f} tx/s",
    )
    console.print(table)
    console.print(
        f"online == batch: max |online - batch| = {check.max_abs_diff:.3g} over {check.compared}"
        f" ids, {check.degraded} degraded, {len(check.errors)} failed"
    )
    console.print(f"serving phase (serve job, relay, scoring): {check.seconds:.1f} s")
    for error in check.errors[:3]:
        console.print(f"  failed: {error}", soft_wrap=True)


def _keep_serving(console: Console, demo: FraudDemo, check: OnlineCheck) -> None:
    console.print("The silos, the relay and the issuer's endpoint keep serving. Try:")
    for line in try_lines(demo.workdir, check):
        console.print(f"  {line}", soft_wrap=True, highlight=False)
    console.print(f"  fedsilo run {demo.workdir / 'job.toml'}   (reruns the job)\nCtrl-C stops.")
    try:
        wait_for_signal()
    except KeyboardInterrupt:
        console.print("stopping the relay and the silos")


def demo_fraud(args: argparse.Namespace) -> int:
    console = Console()
    started = time.perf_counter()
    rows = args.rows or DEFAULT_ROWS
    demo = FraudDemo.setup(args.workdir.resolve(), rows=rows, seed=args.seed, trees=args.trees)
    with demo.running():
        record = demo.train(console)
        trained = time.perf_counter() - started
        if record.state != "succeeded":
            raise JobError(f"the demo's job {record.state}: {record.reason}")
        with demo.serving(record, console) as online:
            summary(console, demo, record, trained, online)
            (demo.workdir / "summary.json").write_text(
                json.dumps(
                    {
                        **record.result,
                        "fraud_demo": evaluation(record),
                        "online": online.as_json(),
                    },
                    indent=2,
                )
            )
            if getattr(args, "serve", False):
                _keep_serving(console, demo, online)
    return 0
