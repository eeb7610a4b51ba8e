"""The ``fedsilo`` command line.

Every domain error ends here as one line on stderr and the exit code of its class
(``fedsilo.errors.exit_code_for``; the table is ``fedsilo.errors.EXIT_CODES``, printed by
``fedsilo --help``); a user never sees a traceback for bad input. ``--debug`` shows it anyway.
Global options (``--debug``, ``--log-level``, ``--log-format``, ``--json``, ``--config``) are
accepted before or after the subcommand.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fedsilo import __version__
from fedsilo.errors import EXIT_CODES, INTERRUPTED, FedsiloError, exit_code_for
from fedsilo.logs import LOG_FORMATS, LOG_LEVELS, configure

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]


def _lazy(module: str, name: str) -> Handler:
    """Import a command's module only when it runs: `fedsilo --help` stays fast."""

    def run(args: argparse.Namespace) -> int:
        import importlib

        fn: Handler = getattr(importlib.import_module(f"fedsilo.cli.{module}"), name)
        return fn(args)

    return run


def _silo(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    silo = sub.add_parser("silo", help="run or check a silo node").add_subparsers(
        dest="action", required=True
    )
    serve = silo.add_parser("serve", help="serve this silo's datasets to the consortium")
    serve.add_argument("--config", type=Path, required=True, help="silo TOML config")
    serve.set_defaults(func=_lazy("silo_cmd", "serve"))
    check = silo.add_parser("check", help="validate the config and datasets, then exit")
    check.add_argument("--config", type=Path, required=True, help="silo TOML config")
    check.add_argument(
        "--json", action="store_true", help="print rows and id formats per dataset as JSON"
    )
    check.set_defaults(func=_lazy("silo_cmd", "check"))
    load = silo.add_parser("load-csv", help="load a CSV file into a table of the silo's database")
    load.add_argument("csv", help="CSV file (plain or .gz), or demo:PARTY for bundled demo data")
    load.add_argument("--config", type=Path, required=True, help="silo TOML config")
    load.add_argument("--dataset", help="dataset whose table and id column to use (default: first)")
    load.add_argument("--if-missing", action="store_true", help="do nothing if the table exists")
    load.add_argument(
        "--replace", action="store_true", help="replace an existing table (in one transaction)"
    )
    load.add_argument(
        "--normalize-ids",
        metavar="STEPS",
        help="normalise ids before loading, e.g. trim,lower (steps: trim, lower, upper, nfc); "
        "every silo of a consortium loads with the same steps",
    )
    load.set_defaults(func=_lazy("silo_cmd", "load_csv"))
    describe = silo.add_parser(
        "describe", help="ask a running silo what it offers (via coordinator config)"
    )
    describe.add_argument("--config", type=Path, required=True, help="coordinator TOML config")
    describe.set_defaults(func=_lazy("run_cmd", "describe"), json_ok=True)


def _coordinator(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    coord = sub.add_parser("coordinator", help="run the coordinator service").add_subparsers(
        dest="action", required=True
    )
    serve = coord.add_parser("serve", help="serve the coordinator API (jobs, models)")
    serve.add_argument("--config", type=Path, required=True, help="coordinator TOML config")
    serve.set_defaults(func=_lazy("run_cmd", "serve_coordinator_cmd"))


def _jobs(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    run = sub.add_parser("run", help="run a job (PSI, train, evaluate, score) from a TOML spec")
    run.add_argument("job", type=Path, help="job TOML spec")
    run.add_argument("--resume", metavar="JOB_ID", help="resume a failed job from its checkpoints")
    run.add_argument(
        "--coordinator",
        metavar="ADDR",
        help="submit to a running coordinator instead of running in this process",
    )
    run.set_defaults(func=_lazy("run_cmd", "run"), json_ok=True)
    jobs = sub.add_parser(
        "jobs",
        help="list jobs (newest first), show one, cancel one, or print its log",
        description="fedsilo jobs: list; fedsilo jobs [show] ID: one job with its events; "
        "fedsilo jobs cancel ID: stop it (it ends 'cancelled'); "
        "fedsilo jobs logs ID [--follow]: its events (and progress) until it ends",
    )
    jobs.add_argument(
        "words", nargs="*", metavar="[show|cancel|logs] JOB_ID", help="what to do with which job"
    )
    jobs.add_argument("--config", type=Path, required=True, help="coordinator TOML config")
    jobs.add_argument("--follow", action="store_true", help="logs: stream until the job ends")
    jobs.add_argument(
        "--wait",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="cancel: wait this long for the job to end (default 30; 0: do not wait)",
    )
    jobs.set_defaults(func=_lazy("jobs_cmd", "jobs"), json_ok=True)
    score = sub.add_parser(
        "score",
        help="score customers with a registered model (written at the "
        "label holder; a whole horizontal model: at one member, alone)",
    )
    score.add_argument("--model", required=True, help="registry id (fedsilo models)")
    score.add_argument("--config", type=Path, required=True, help="coordinator TOML config")
    score.add_argument(
        "--dataset",
        action="append",
        default=[],
        metavar="PARTY=DATASET",
        help="dataset to score at a party (default: what the model trained on); "
        "a whole model scores at the one party named here (default: its first "
        "member)",
    )
    score.add_argument("--alignment", help="score a stored alignment instead of running PSI")
    score.add_argument(
        "--table", default="scores", help="score table at the label holder (or the scoring member)"
    )
    score.add_argument("--chunk-rows", type=int, default=None, help="rows per transaction")
    score.add_argument("--resume", metavar="JOB_ID", help="continue a failed scoring job")
    score.set_defaults(func=_lazy("score_cmd", "score"))
    models = sub.add_parser("models", help="list registered models, or show one")
    models.add_argument("action", nargs="?", choices=["show"], help="show one model")
    models.add_argument("model_id", nargs="?")
    models.add_argument("--config", type=Path, required=True, help="coordinator TOML config")
    models.set_defaults(func=_lazy("jobs_cmd", "models"), json_ok=True)


def _job(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    job = sub.add_parser("job", help="check a job spec without running it").add_subparsers(
        dest="action", required=True
    )
    check = job.add_parser(
        "check",
        help="validate every step (keys, types, bounds, roles) "
        "as `fedsilo run` does before contacting any silo",
    )
    check.add_argument("job", type=Path, help="job TOML spec")
    check.set_defaults(func=_lazy("job_cmd", "check"))


def _certs(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    certs = sub.add_parser("certs", help="consortium CA and party certificates").add_subparsers(
        dest="action", required=True
    )
    init = certs.add_parser("init", help="create the consortium CA in DIR")
    init.add_argument("dir", type=Path)
    init.add_argument("--name", default="fedsilo consortium CA")
    init.set_defaults(func=_lazy("certs_cmd", "init"))
    issue = certs.add_parser("issue", help="issue a certificate for a party (silo or coordinator)")
    issue.add_argument("dir", type=Path, help="folder holding the CA")
    issue.add_argument("name", help="party name (its identity)")
    issue.add_argument(
        "--role",
        choices=["silo", "coordinator"],
        help="what the party is (required): only silos can be parties of a job, only the "
        "coordinator can call a silo",
    )
    issue.add_argument(
        "--host",
        action="append",
        default=None,
        metavar="HOST",
        help="a DNS name or IP the party is reached at, added to 127.0.0.1 and "
        "localhost (repeatable)",
    )
    issue.add_argument("--force", action="store_true", help="overwrite an existing key")
    issue.set_defaults(func=_lazy("certs_cmd", "issue"))


def _audit(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    audit = sub.add_parser("audit", help="print or verify a silo's audit ledger")
    audit.add_argument(
        "action",
        nargs="?",
        choices=["verify", "head", "heads"],
        help="verify: check the chain against the signed heads; head: print the "
        "latest signed head as JSON (for --expect-head); heads: list kept heads",
    )
    audit.add_argument("--silo", type=Path, required=True, help="silo TOML config")
    audit.add_argument("--job", help="only this job's entries")
    audit.add_argument(
        "--summary", action="store_true", help="messages and bytes per job, recipient and kind"
    )
    audit.add_argument(
        "--expect-head",
        metavar="FILE_OR_HEX",
        help="verify: the chain must extend this head too (a JSON file from "
        "'audit head' or the coordinator, or SEQ:HASH, or a bare HASH)",
    )
    audit.add_argument("--party", help="head: a peer's head this silo kept (default: its own)")
    audit.set_defaults(func=_lazy("audit_cmd", "audit"), json_ok=True)


def _demo(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    demo = sub.add_parser("demo", help="run a whole consortium on this machine on bundled data")
    demo.add_argument(
        "--workdir",
        type=Path,
        default=Path("fedsilo-demo"),
        help="folder for databases, certificates, scores and the report",
    )
    demo.add_argument(
        "--serve",
        action="store_true",
        help="keep the silos serving after the demo (rerun its job.toml with fedsilo run) "
        "until Ctrl-C",
    )
    demo.set_defaults(func=_lazy("demo", "demo"))
    which = demo.add_subparsers(dest="which", metavar="[fraud]")
    fraud = which.add_parser(
        "fraud", help="a card issuer and an acquirer on simulated card transactions"
    )
    fraud.add_argument("--workdir", type=Path, default=Path("fedsilo-demo-fraud"))
    fraud.add_argument(
        "--rows", type=int, help="transactions to simulate (default: sized for about a minute)"
    )
    fraud.add_argument("--seed", type=int, default=0, help="seed of the simulation")
    fraud.add_argument("--trees", type=int, default=100, help="trees of the fraud model (depth 4)")
    fraud.add_argument(
        "--serve",
        action="store_true",
        help="keep the silos, the relay and the issuer's scoring endpoint up after the demo "
        "(try curl / fedsilo score-one) until Ctrl-C",
    )
    fraud.set_defaults(func=_lazy("demo_fraud", "demo_fraud"))


def _fraudsim(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sim = sub.add_parser(
        "fraudsim", help="simulate card transactions; write the issuer's and acquirer's CSVs"
    )
    sim.add_argument("--out", type=Path, required=True, help="folder for issuer.csv, acquirer.csv")
    sim.add_argument("--rows", type=int, default=1_000_000, help="about this many transactions")
    sim.add_argument("--seed", type=int, default=0, help="same seed, same bytes")
    sim.add_argument("--gzip", action="store_true", help="write .csv.gz")
    sim.set_defaults(func=_lazy("fraudsim_cmd", "fraudsim"))


def exit_code_help() -> str:
    """The exit-code table for ``fedsilo --help`` (from ``fedsilo.errors.EXIT_CODES``)."""
    rows = [f"  {code:>3}  {name or '-':<16} {meaning}" for code, name, meaning in EXIT_CODES]
    return "exit codes (the same fault gives the same code from every command):\n" + "\n".join(rows)


def _global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """The options every (sub)command accepts; below the top their default is SUPPRESS, so a
    value given before the subcommand is not reset by the subcommand's parser."""

    def default(value: object) -> object:
        return value if top else argparse.SUPPRESS

    def add(flag: str, **kwargs: Any) -> None:
        if flag in parser._option_string_actions:  # the command defines it itself
            if flag == "--json":
                parser.set_defaults(json_ok=True)
            return
        parser.add_argument(flag, **kwargs)

    add(
        "--debug",
        action="store_true",
        default=default(False),
        help="show tracebacks and debug logs (--log-level debug)",
    )
    add(
        "--log-level",
        choices=LOG_LEVELS,
        default=default(None),
        help="log records at this level and above (default: info for serve, else warning)",
    )
    add(
        "--log-format",
        choices=LOG_FORMATS,
        default=default("text"),
        help="text lines, or one JSON object per line",
    )
    add(
        "--json",
        action="store_true",
        default=default(False),
        help="print results as one JSON document (jobs, models, run, describe, audit)",
    )


def _spread(parser: argparse.ArgumentParser) -> None:
    """Give every subcommand the global options; a required --config of a subcommand may come
    before it too (checked in :func:`main`)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in set(action.choices.values()):
                _global_options(child, top=False)
                for option in child._actions:
                    if option.dest == "config" and option.required:
                        option.required, option.default = False, argparse.SUPPRESS
                        child.set_defaults(needs_config=True)
                _spread(child)


def _serving(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    serve = sub.add_parser(
        "serve",
        help="serve a registered vertical model online: prepare it at its silos, then relay "
        "between them until stopped (docs/serving.md)",
    )
    serve.add_argument("model_id", help="registry id (fedsilo models)")
    serve.add_argument("--config", type=Path, required=True, help="coordinator TOML config")
    serve.add_argument(
        "--on-party-down",
        choices=["fail", "degrade"],
        default="fail",
        help="when a passive silo is down or late: fail the request (default) or score with "
        "its features missing",
    )
    serve.add_argument(
        "--dataset",
        action="append",
        default=[],
        metavar="PARTY=DATASET",
        help="dataset a party serves from (default: what the model trained on, else 'main')",
    )
    serve.add_argument(
        "--serving-id", help="reuse this prepared serving (its keys) instead of a new serve job"
    )
    serve.set_defaults(func=_lazy("serve_cmd", "serve"))
    one = sub.add_parser("score-one", help="ask a label holder's scoring endpoint for one score")
    one.add_argument("model", help="served model id")
    one.add_argument("id", help="customer / transaction id")
    one.add_argument("--url", required=True, help="endpoint, e.g. https://127.0.0.1:8443")
    one.add_argument(
        "--feature",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="the label holder's own feature (all of them, or none: looked up by id)",
    )
    one.add_argument("--token-file", type=Path, help="file holding the bearer token")
    one.add_argument("--ca", type=Path, help="CA certificate of the endpoint (https)")
    one.add_argument("--cert", type=Path, help="client certificate (https with client auth)")
    one.add_argument("--key", type=Path, help="client key")
    one.add_argument("--deadline-ms", type=int, default=None, help="request deadline")
    one.set_defaults(func=_lazy("serve_cmd", "score_one"))


def _health(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    health = sub.add_parser(
        "health", help="gRPC health check of a silo or the coordinator (exit 0: serving)"
    )
    health.add_argument(
        "--config",
        type=Path,
        required=True,
        help="a silo TOML (checks that silo with its own certificate) or a coordinator TOML "
        "(checks the coordinator, or --silo NAME)",
    )
    health.add_argument("--silo", metavar="NAME", help="with a coordinator config: check this silo")
    health.add_argument(
        "--address",
        metavar="HOST:PORT",
        help="dial here (default: from the config; 0.0.0.0 means loopback)",
    )
    health.add_argument("--timeout", type=float, default=5.0, help="seconds (default: 5)")
    health.set_defaults(func=_lazy("health_cmd", "health"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fedsilo",
        description="Privacy-preserving cross-silo analytics: PSI, SecureBoost, federated LR.",
        epilog=exit_code_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fedsilo {__version__}")
    _global_options(parser, top=True)
    parser.add_argument(
        "--config", type=Path, default=None, help="the config file of the command (see its help)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands = (
        _demo,
        _silo,
        _coordinator,
        _jobs,
        _job,
        _certs,
        _audit,
        _fraudsim,
        _serving,
        _health,
    )
    for add in commands:
        add(sub)
    _spread(parser)
    return parser


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "needs_config", False) and args.config is None:
        parser.error("the following arguments are required: --config")
    if args.json and not getattr(args, "json_ok", False):
        parser.error(f"--json is not available for 'fedsilo {args.command}'")
    return args


def _log_level(args: argparse.Namespace) -> str:
    if args.debug:
        return "debug"
    if args.log_level:
        return str(args.log_level)
    serving = getattr(args, "action", None) == "serve"
    return "info" if serving else "warning"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    configure(_log_level(args), args.log_format)
    try:
        return int(args.func(args) or 0)
    except FedsiloError as err:
        if args.debug:
            raise
        print(f"fedsilo: error: {err}", file=sys.stderr)
        return exit_code_for(err)
    except KeyboardInterrupt:
        print("fedsilo: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:  # `fedsilo audit | head`: the reader left; not an error of ours
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
