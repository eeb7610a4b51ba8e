"""Start a consortium's silos as their own ``fedsilo silo serve`` processes, and stop them.

Used by ``fedsilo demo`` (and by any other demo consortium): give it one :class:`SiloLaunch`
per party (its config, and optionally a CSV to load first) and it loads the data, starts one
process per silo, waits until each answers its gRPC health check (under mTLS, with the silo's
own certificate), and stops them all on exit, Ctrl-C, SIGTERM or failure:

    with launch_silos(specs, logs=workdir / "logs") as silos:
        run_the_job(silos.addresses)

Each child runs in the parent's process group (a Ctrl-C at the terminal reaches it too) and,
on Linux, is told to receive SIGTERM when the parent dies (``PR_SET_PDEATHSIG``), so even a
parent killed with SIGKILL leaves no silo behind.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fedsilo import settings
from fedsilo.cli.health_cmd import channel_for, silo_target
from fedsilo.errors import ConfigError, SiloUnavailable
from fedsilo.silo_node.config import SiloConfig, load_silo_config
from fedsilo.silo_node.csv_load import load_csv_into_dataset

__all__ = [
    "RunningSilos",
    "SiloLaunch",
    "launch_relay",
    "launch_silos",
    "stop_on_sigterm",
    "wait_for_signal",
]

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class SiloLaunch:
    """One silo to start: its party name, its config, and optionally a CSV for its table."""

    party: str
    config: Path
    #: CSV (plain or .gz) loaded into ``dataset``'s table before the silo starts; None: the
    #: silo's tables are already there
    data: Path | None = None
    #: which dataset of the config the CSV fills (default: the config's first)
    dataset: str | None = None
    normalize_ids: tuple[str, ...] = ()


@dataclass
class RunningSilos:
    """The started silo processes, by party, with the address each listens on."""

    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    addresses: dict[str, str] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)

    def stop(self) -> None:
        """SIGTERM every silo, wait, kill what did not stop: no process is left behind."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + settings.LAUNCH_STOP_TIMEOUT_S
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def check_alive(self) -> None:
        """Raise, naming the silo and its log's last line, if one of them has exited."""
        for party, proc in self.procs.items():
            if proc.poll() is not None:
                last = _last_line(self.logs[party])
                raise SiloUnavailable(f"silo '{party}' exited with code {proc.returncode}: {last}")


def _last_line(log: Path) -> str:
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return f"(no log at {log})"
    return lines[-1][:300] if lines else f"(empty log {log})"


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: SIGTERM this child when its parent dies (no orphan silo after a SIGKILL)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _spawn(spec: SiloLaunch, log: Path) -> subprocess.Popen[bytes]:
    return _spawn_fedsilo(["silo", "serve", "--config", str(spec.config)], log)


def _spawn_fedsilo(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    """``fedsilo ARGS`` as a child that dies with this process, its output in ``log``."""
    argv = [sys.executable, "-m", "fedsilo.cli.main", *args]
    with log.open("ab") as out:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 (only prctl, no locks taken)
        )


def _wait_serving(silos: RunningSilos, configs: dict[str, SiloConfig], timeout: float) -> None:
    """Until every silo answers SERVING to its own certificate's health check."""
    deadline = time.monotonic() + timeout
    for party, config in configs.items():
        with channel_for(silo_target(config)) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                silos.check_alive()
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline:
                    raise SiloUnavailable(
                        f"silo '{party}' did not start within {timeout:.0f} s: "
                        f"{_last_line(silos.logs[party])}"
                    )
                time.sleep(0.2)


@contextmanager
def launch_silos(
    specs: Sequence[SiloLaunch], *, logs: Path, timeout: float = settings.LAUNCH_START_TIMEOUT_S
) -> Iterator[RunningSilos]:
    """Load each spec's data, start one ``fedsilo silo serve`` per spec, yield once all serve;
    stop them all when the block ends, however it ends."""
    configs = {s.party: load_silo_config(s.config) for s in specs}
    for spec in specs:
        if configs[spec.party].party != spec.party:
            raise ConfigError(
                f"{spec.config.name}: party '{configs[spec.party].party}', expected '{spec.party}'"
            )
        if spec.data is not None:
            load_csv_into_dataset(
                configs[spec.party], spec.data, spec.dataset, normalize_ids=spec.normalize_ids
            )
    logs.mkdir(parents=True, exist_ok=True)
    silos = RunningSilos()
    try:
        for spec in specs:
            silos.logs[spec.party] = logs / f"{spec.party}.log"
            silos.procs[spec.party] = _spawn(spec, silos.logs[spec.party])
            silos.addresses[spec.party] = configs[spec.party].listen
        _wait_serving(silos, configs, timeout)
        yield silos
    finally:
        silos.stop()


@contextmanager
def launch_relay(
    model_id: str,
    serving_id: str,
    coordinator_config: Path,
    *,
    logs: Path,
    timeout: float = settings.LAUNCH_START_TIMEOUT_S,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run the coordinator's relay for a prepared serving (``fedsilo serve MODEL --serving-id
    ID``) as a child process; yield once every silo's Serve stream is up; stop it on the way
    out, however the block ends."""
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / "relay.log"
    args = ["serve", model_id, "--serving-id", serving_id, "--config", str(coordinator_config)]
    relay = RunningSilos(logs={"relay": log})
    proc = relay.procs["relay"] = _spawn_fedsilo(args, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise SiloUnavailable(
                    f"the relay for {model_id} exited with code {proc.returncode}: "
                    f"{_last_line(log)}"
                )
            ready = [ln for ln in log.read_text(errors="replace").splitlines() if "silos up:" in ln]
            if ready and "retried" not in ready[-1]:
                break
            if ready or time.monotonic() > deadline:
                raise SiloUnavailable(f"the relay for {model_id} is not up: {_last_line(log)}")
            time.sleep(0.1)
        yield proc
    finally:
        relay.stop()


@contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt for the block, so ``finally`` clauses run."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def wait_for_signal() -> None:
    """Block until Ctrl-C or SIGTERM (as KeyboardInterrupt, inside :func:`stop_on_sigterm`)."""
    while True:
        signal.pause() if hasattr(signal, "pause") else time.sleep(3600)
